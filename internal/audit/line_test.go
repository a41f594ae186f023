package audit

import (
	"bytes"
	"encoding/json"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/moatproject/moat/internal/store"
)

func TestLineRoundTrip(t *testing.T) {
	t.Parallel()
	rec := testStoredRecord(3)
	rec.Details = []byte(`{"html":"\u003cb\u003e","n":1}`)
	lines := []Line{
		{Type: LineRecord, Record: &rec, Hash: tlog.RecordHash([]byte("x"))},
		{Type: LineCheckpoint, Checkpoint: &store.AuditCheckpoint{Size: 4, Note: []byte("text\n\n— moat-audit abc\n")}},
		{Type: LineFrontier, Size: 5, Hashes: []tlog.Hash{tlog.RecordHash([]byte("a")), tlog.RecordHash([]byte("b"))}},
	}
	for _, l := range lines {
		b, err := l.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseLine(bytes.TrimSuffix(b, []byte("\n")))
		if err != nil {
			t.Fatalf("%s: %v\n%s", l.Type, err, b)
		}
		again, _ := back.AppendJSON(nil)
		if !bytes.Equal(again, b) {
			t.Fatalf("%s: round trip changed the line:\n%s\n%s", l.Type, b, again)
		}
	}
}

func TestParseLineRefuses(t *testing.T) {
	t.Parallel()
	h := `"` + "YeTdAW+96G2jTnXjAshXKHAGKC3QVyFDu8B1GcPAHY8=" + `"`
	tests := []string{
		``,
		`{}`,
		`{"type":"record"}`,
		`{"type":"record","seq":-1,"time":"2026-11-25T13:50:04.123456Z","actor":"a","action":"b","resource":"","outcome":"ok","details":{},"hash":` + h + `}`,
		`{"type":"record","seq":1,"time":"2026-11-25T13:50:04Z","actor":"a","action":"b","resource":"","outcome":"ok","details":{},"hash":` + h + `}`,
		`{"type":"record","seq":1,"time":"2026-11-25T13:50:04.123456Z","actor":"a","action":"b","resource":"","outcome":"ok","details":[],"hash":` + h + `}`,
		`{"type":"record","seq":1,"time":"2026-11-25T13:50:04.123456Z","actor":"a","action":"b","resource":"","outcome":"ok","details":{},"hash":"AAAA"}`,
		`{"type":"record","seq":1,"time":"2026-11-25T13:50:04.123456Z","actor":"a","action":"b","resource":"","outcome":"ok","details":{},"hash":` + h + `,"extra":1}`,
		`{"type":"record","seq":1,"time":"2026-11-25T13:50:04.123456Z","actor":"a","action":"b","resource":"","outcome":"ok","details":{},"hash":` + h + `} {}`,
		`{"type":"checkpoint","size":0,"note":"x"}`,
		`{"type":"checkpoint","size":3}`,
		`{"type":"frontier","size":3,"hashes":[` + h + `]}`,
		`{"type":"frontier","size":2,"hashes":["AAAA"]}`,
		`{"type":"tree"}`,
	}
	for _, in := range tests {
		if l, err := ParseLine([]byte(in)); err == nil {
			t.Errorf("ParseLine(%s) = %+v, want an error", in, l)
		}
	}
}

// FuzzParseLine: no input panics the export parser, and what it accepts
// encodes back to a line that parses to the same thing.
func FuzzParseLine(f *testing.F) {
	rec := testStoredRecord(1)
	for _, l := range []Line{
		{Type: LineRecord, Record: &rec},
		{Type: LineCheckpoint, Checkpoint: &store.AuditCheckpoint{Size: 2, Note: []byte("go.sum database tree\n2\nabc\n\n— moat-audit x\n")}},
		{Type: LineFrontier, Size: 3, Hashes: make([]tlog.Hash, 2)},
	} {
		b, err := l.AppendJSON(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"record","seq":1e3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLine(data)
		if err != nil {
			return
		}
		b, err := l.AppendJSON(nil)
		if err != nil {
			t.Fatalf("an accepted line does not encode: %v", err)
		}
		back, err := ParseLine(b)
		if err != nil {
			t.Fatalf("re-encoded line does not parse: %v\n%s", err, b)
		}
		if back.Type != l.Type {
			t.Fatal("type changed")
		}
		if l.Type == LineRecord && (back.Record.Seq != l.Record.Seq || back.Hash != l.Hash || !back.Record.Time.Equal(l.Record.Time) ||
			back.Record.Actor != l.Record.Actor || !bytes.Equal(compact(back.Record.Details), compact(l.Record.Details))) {
			t.Fatalf("record changed in a round trip:\n%+v\n%+v", l.Record, back.Record)
		}
	})
}

func compact(b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}
