package gateway

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/audit/audittest"
	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/detect"
	"github.com/moatproject/moat/internal/store"
)

// Every call, allowed or refused, leaves an audit record naming who, where
// to and what was decided, and no planted value in clear or encoded; a call
// that goes out is recorded as requested before it is sent.
func TestAuditRecorderRecordsCallsWithoutPayloads(t *testing.T) {
	t.Parallel()
	log, st := audittest.New(t)
	up := newFakeUpstream(t)
	g := newTestGateway(t, upstreamResources(up.srv.URL), func(c *Config) { c.Recorder = AuditRecorder{Log: log} })

	ok := Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{
		userMsg("Customer " + planted["pii.email"] + " paid with card " + planted["pii.card"] + ".")}}
	if _, err := g.Chat(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	refused := Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("summarise")},
		Data: []DataItem{{Name: "ticket", Value: injectionText}}}
	wantCode(t, func() error { _, err := g.Chat(context.Background(), refused); return err }(), CodeInjection)

	recs := loggedRecords(t, log, st, 3)
	for i, want := range []string{"requested", "ok", "denied"} {
		r := recs[i]
		if r.Action != "ai.call" || r.Outcome != want || r.Actor != "key:"+keyIdentity().ID || r.Resource != "model/chat" {
			t.Errorf("record %d = %s %s %s %s", i, r.Actor, r.Action, r.Resource, r.Outcome)
		}
		var d map[string]any
		if err := json.Unmarshal(r.Details, &d); err != nil {
			t.Fatal(err)
		}
		if d["requestId"] == "" || d["environment"] != "dev" {
			t.Errorf("record %d details = %s", i, r.Details)
		}
		for class, v := range planted {
			for _, enc := range []string{v, base64.StdEncoding.EncodeToString([]byte(v)), hex.EncodeToString([]byte(v))} {
				if strings.Contains(string(r.Details), enc) {
					t.Errorf("record %d holds the planted %s", i, class)
				}
			}
		}
	}
	for _, r := range recs[:2] {
		if !strings.Contains(string(r.Details), `"findings":{`) || !strings.Contains(string(r.Details), `"tokenize":`) || !strings.Contains(string(r.Details), `"inputSha256"`) {
			t.Errorf("the allowed call's record lacks findings, decisions or digest: %s", r.Details)
		}
		// The identifiers it carried are there by the HMAC of their
		// normalised form, which is not there in clear either.
		for _, class := range []string{"pii.email", "pii.card"} {
			n := detect.Normalize(class, planted[class])
			if strings.Contains(string(r.Details), n) {
				t.Errorf("the record holds the normalised %s in clear", class)
			}
			if !slices.Contains(subjectsOf(t, r.Details), log.HMAC(n)) {
				t.Errorf("the record lacks the HMAC of the normalised %s: %s", class, r.Details)
			}
		}
	}
}

// subjectsOf returns details' "subjects", checking each is an HMAC.
func subjectsOf(t *testing.T, details []byte) []string {
	t.Helper()
	var d struct{ Subjects []string }
	if err := json.Unmarshal(details, &d); err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Subjects {
		if !strings.HasPrefix(s, "hmac-sha256:") || len(s) != len("hmac-sha256:")+64 {
			t.Fatalf("subject %q is not an HMAC", s)
		}
	}
	return d.Subjects
}

// The identifiers of an answer are recorded too, and those of a data item
// declared personal: an answer leaking someone's address fails its check,
// and its record says whose it was.
func TestAuditRecorderRecordsSubjectsOfAnswersAndDeclaredItems(t *testing.T) {
	t.Parallel()
	log, st := audittest.New(t)
	up := newFakeUpstream(t)
	const leaked = "Bob.Stranger@Example.org"
	up.answer = func(chatBody) string { return "Ask " + leaked + " instead." }
	g := newTestGateway(t, upstreamResources(up.srv.URL), func(c *Config) { c.Recorder = AuditRecorder{Log: log} })
	req := Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("Who handles this?")},
		Data: []DataItem{{Name: "customer", Value: "  Jane   DOE ", Class: "pii.person"}}}
	wantCode(t, func() error { _, err := g.Chat(context.Background(), req); return err }(), CodeCheckFailed)

	recs := loggedRecords(t, log, st, 2)
	sent, done := subjectsOf(t, recs[0].Details), subjectsOf(t, recs[1].Details)
	item, answer := log.HMAC("jane doe"), log.HMAC(strings.ToLower(leaked))
	if !slices.Contains(sent, item) || slices.Contains(sent, answer) {
		t.Errorf("the requested record's subjects = %q, want the declared item's (whole), and not yet the answer's", sent)
	}
	if !slices.Contains(done, item) || !slices.Contains(done, answer) {
		t.Errorf("the final record's subjects = %q, want the declared item's and the answer's", done)
	}
	for _, r := range recs {
		if strings.Contains(strings.ToLower(string(r.Details)), "stranger") || strings.Contains(strings.ToLower(string(r.Details)), "jane") {
			t.Errorf("record %d holds an identifier in clear: %s", r.Seq, r.Details)
		}
	}
}

// The details encoder is reused from record to record: nothing of one
// record shows in the next.
func TestAuditRecorderDetailsDoNotCarryOver(t *testing.T) {
	t.Parallel()
	log, st := audittest.New(t)
	r := AuditRecorder{Log: log}
	full := Record{RequestID: "req_full", Environment: "dev", Identity: keyIdentity(), Alias: "chat", Outcome: CodeUnavailable,
		Error: "upstream down", Findings: map[string]int{"pii.email": 1}, Decisions: map[string]int{"tokenize": 1},
		Subjects: []audit.SensitiveValue{audit.Sensitive("grace.hopper@example.com")}, Attempts: []Attempt{{Target: "openai/gpt-test"}}}
	bare := Record{RequestID: "req_bare", Environment: "dev", Identity: keyIdentity(), Alias: "chat", Outcome: "ok"}
	for _, rec := range []Record{full, bare} {
		if err := r.Record(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
	}
	recs := loggedRecords(t, log, st, 2)
	var got map[string]any
	if err := json.Unmarshal(recs[1].Details, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{}
	for k, v := range auditDetailsReference(bare) {
		// As JSON reads it back: numbers are floats, maps of any.
		b, _ := json.Marshal(v)
		var back any
		_ = json.Unmarshal(b, &back)
		want[k] = back
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the second record's details: %s, want %v", recs[1].Details, want)
	}
}

// loggedRecords waits for the log's records to reach the database and
// returns them, failing unless there are want of them.
func loggedRecords(t *testing.T, log *audit.Log, st store.AuditQueries, want int) []store.AuditRecord {
	t.Helper()
	if err := log.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	recs, err := st.ListAudit(t.Context(), 0, want+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != want {
		t.Fatalf("%d audit records, want %d", len(recs), want)
	}
	return recs
}

func TestAuditRecorderBoundsSubjects(t *testing.T) {
	t.Parallel()
	log, st := audittest.New(t)
	rec := Record{RequestID: "req_bound", Identity: keyIdentity(), Alias: "chat", Outcome: "ok"}
	for i := range 3 * maxRecordSubjects {
		v := audit.Sensitive(fmt.Sprintf("person%d@example.com", i/2)) // each twice
		rec.Subjects = append(rec.Subjects, v)
	}
	if err := (AuditRecorder{Log: log}).Record(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	recs := loggedRecords(t, log, st, 1)
	got := subjectsOf(t, recs[0].Details)
	if len(got) != maxRecordSubjects || got[0] != log.HMAC("person0@example.com") || got[1] != log.HMAC("person1@example.com") {
		t.Errorf("%d subjects, starting %q", len(got), got[:min(2, len(got))])
	}
}

// A call whose audit record cannot be committed fails, and nothing is sent
// to the upstream.
func TestAuditRecorderFailsClosed(t *testing.T) {
	t.Parallel()
	log, _ := audittest.New(t)
	up := newFakeUpstream(t)
	g := newTestGateway(t, upstreamResources(up.srv.URL), func(c *Config) { c.Recorder = AuditRecorder{Log: log} })
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("hello")}})
	if err == nil || res.Content != "" {
		t.Fatalf("call succeeded without its audit record: %q, %v", res.Content, err)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("%d upstream requests, want none", n)
	}
}

// BenchmarkAuditRecorder is one AI call's two records, "requested" and the
// outcome, appended to a journaled SQLite audit log as moat serve keeps it.
func BenchmarkAuditRecorder(b *testing.B) {
	log, _ := audittest.New(b)
	r := AuditRecorder{Log: log}
	rec := Record{
		RequestID: "req_a233piqhrlouby6n", Environment: "dev",
		Identity: Identity{Kind: "key", ID: "tok_4bq7cd2k5xr6", Name: "e2e"},
		Alias:    "chat", Connector: "openai", Vendor: "acme-ai", Model: "gpt-test",
		Findings:    map[string]int{"pii.email": 1, "pii.phone": 1, "pii.card": 1},
		Decisions:   map[string]int{"tokenize": 3},
		Subjects:    []audit.SensitiveValue{audit.Sensitive("grace.hopper@example.com"), audit.Sensitive("14155550132"), audit.Sensitive("4111111111111111")},
		InputDigest: strings.Repeat("ab", 32),
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.RecordStart(ctx, rec); err != nil {
			b.Fatal(err)
		}
		done := rec
		done.Outcome, done.OutputDigest = "ok", strings.Repeat("cd", 32)
		done.Usage, done.CostMicros = connectors.Usage{PromptTokens: 40, CompletionTokens: 10}, 60
		done.Attempts = []Attempt{{Target: "openai/gpt-test", Duration: 150 * time.Microsecond}}
		if err := r.Record(ctx, done); err != nil {
			b.Fatal(err)
		}
	}
}
