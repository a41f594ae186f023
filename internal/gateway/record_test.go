package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/detect"
)

// TestDigestMessagesIsMarshal checks that the streamed digest is the
// SHA-256 of json.Marshal's bytes, escapes and all, so records written
// before and after it was streamed compare.
func TestDigestMessagesIsMarshal(t *testing.T) {
	cases := [][]connectors.Message{
		nil,
		{},
		{{Role: connectors.User, Content: ""}},
		{{Role: connectors.System, Content: "Summarise.\n"}, {Role: connectors.User, Content: "a <b> & \"c\"\n\t\u2028\u2029 \x00 \xff é 😀"}},
		{{Role: connectors.User, Content: strings.Repeat("line ending in a newline\n", 400)}},
	}
	for i, msgs := range cases {
		b, err := json.Marshal(msgs)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got, want := digestMessages(msgs), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("case %d: digest %s, want %s", i, got, want)
		}
	}
}

// A Record's subjects reach the audit log alone, as HMACs: encoded as JSON,
// logged with slog or printed, a Record shows none of them, in any form.
func TestRecordNeverShowsSubjects(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t)
	g := newTestGateway(t, upstreamResources(up.srv.URL), nil)
	res, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "chat", RestoreAll: true,
		Messages: []Message{userMsg("Refund " + planted["pii.email"] + ", card " + planted["pii.card"] + ", phone " + planted["pii.phone"] + ".")}})
	if err != nil {
		t.Fatal(err)
	}
	rec := g.rec.last(t)
	for _, r := range []Record{rec, res.Record} {
		if len(r.Subjects) != 3 {
			t.Fatalf("the record holds %d subjects, want 3", len(r.Subjects))
		}
	}
	var values []string
	for _, class := range []string{"pii.email", "pii.card", "pii.phone"} {
		n := detect.Normalize(class, planted[class])
		if !slices.Contains(rec.Subjects, audit.Sensitive(n)) {
			t.Errorf("the record lacks the normalised %s", class)
		}
		values = append(values, planted[class], n)
	}

	asJSON, err := json.Marshal(rec)
	if err != nil {
		t.Fatalf("a Record with subjects does not encode: %v", err)
	}
	var jsonLog, textLog bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("call", "record", rec, "records", []Record{rec}, "subjects", rec.Subjects)
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("call", "record", rec, "records", []Record{rec}, "subjects", rec.Subjects)
	// Each rendering must show what it renders (control), so that the
	// check below reads something.
	const placeholder = "[sensitive]"
	for _, r := range []struct{ how, text, control string }{
		{"JSON", string(asJSON), "req_"},
		{"slog JSON", jsonLog.String(), "req_"},
		{"slog text", textLog.String(), placeholder},
		{"%v", fmt.Sprintf("%v", rec), placeholder},
		{"%+v", fmt.Sprintf("%+v", rec), placeholder},
		{"%+v of a pointer", fmt.Sprintf("%+v", &rec), placeholder},
		{"%#v", fmt.Sprintf("%#v", rec), "audit.Sensitive("},
		{"%s", fmt.Sprintf("%s", rec.Subjects), placeholder},
		{"%q", fmt.Sprintf("%q", rec.Subjects), placeholder},
		{"%x", fmt.Sprintf("%x", rec.Subjects), hex.EncodeToString([]byte(placeholder))},
	} {
		how, text := r.how, r.text
		if !strings.Contains(text, r.control) {
			t.Errorf("%s: %q lacks %q", how, text, r.control)
		}
		for _, v := range values {
			for _, enc := range []string{v, strings.ToUpper(v), hex.EncodeToString([]byte(v)), base64.StdEncoding.EncodeToString([]byte(v))} {
				if strings.Contains(text, enc) {
					t.Errorf("%s shows a subject (as %q): %s", how, enc, text)
				}
			}
		}
	}
}

func TestRecordAddSubject(t *testing.T) {
	t.Parallel()
	var r Record
	r.addSubject("pii.email", " Jane@Example.com")
	r.addSubject("pii.email", "jane@example.COM ") // the same, normalised
	r.addSubject("pii.card", "4111 1111 1111 1111")
	r.addSubject("secret.aws_key", "AKIA"+"Z3QX7RT2LMN4PQ5W") // not a person's
	r.addSubject("customer.content", "whatever")              // not an identifier
	r.addSubject("pii.person", "  ")                          // nothing left once normalised
	r.addSubject("pii.address", strings.Repeat("a", maxSubjectBytes+1))
	want := []audit.SensitiveValue{audit.Sensitive("jane@example.com"), audit.Sensitive("4111111111111111")}
	if !slices.Equal(r.Subjects, want) {
		t.Errorf("subjects = %d, want %d (e-mail, card)", len(r.Subjects), len(want))
	}
	text := "Write to ana@example.org or to ana@example.org, card 4111 1111 1111 1111."
	r.addSubjects(text, detect.Scan(text))
	if !slices.Equal(r.Subjects, append(want, audit.Sensitive("ana@example.org"))) {
		t.Errorf("after a scan: %d subjects, want 3", len(r.Subjects))
	}
	for i := range 2 * maxRecordSubjects {
		r.addSubject("pii.phone", fmt.Sprintf("+44 20 7946 %04d", i))
	}
	if len(r.Subjects) != maxRecordSubjects {
		t.Errorf("%d subjects, want the bound %d", len(r.Subjects), maxRecordSubjects)
	}
}

// panickingRecorder panics, or fails with err, in Record and RecordStart.
type panickingRecorder struct{ err error }

func (p panickingRecorder) Record(context.Context, Record) error {
	if p.err != nil {
		return p.err
	}
	panic("record")
}

func (p panickingRecorder) RecordStart(ctx context.Context, r Record) error {
	return p.Record(ctx, r)
}

// A recorder that fails or panics fails the write, naming which one; a
// recorder that keeps no starts is not asked for one.
func TestWriteRecordFailsClosed(t *testing.T) {
	t.Parallel()
	down := errors.New("store down")
	tests := []struct {
		name  string
		write func(Recorder) error
		rec   Recorder
		want  string
	}{
		{"record panics", func(r Recorder) error { return writeRecord(context.Background(), r, Record{}) }, panickingRecorder{}, "gateway: record: recorder panicked (string)"},
		{"record fails", func(r Recorder) error { return writeRecord(context.Background(), r, Record{}) }, panickingRecorder{err: down}, "gateway: record: store down"},
		{"start panics", func(r Recorder) error { return writeStart(context.Background(), r, Record{}) }, panickingRecorder{}, "gateway: record start: recorder panicked (string)"},
		{"start fails", func(r Recorder) error { return writeStart(context.Background(), r, Record{}) }, panickingRecorder{err: down}, "gateway: record start: store down"},
	}
	for _, tc := range tests {
		err := tc.write(tc.rec)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := writeStart(context.Background(), &memRecorder{fail: down}, Record{}); err != nil {
		t.Errorf("a recorder without starts was asked for one: %v", err)
	}
}
