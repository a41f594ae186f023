package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/moatproject/moat/internal/store"
)

// Line types of an export, a file sink and a webhook body: JSON lines of
//
//	{"type":"record","seq":0,"time":"2026-11-25T13:50:04.123456Z","actor":…,"action":…,
//	 "resource":…,"outcome":…,"details":{…},"hash":"<base64 leaf hash>"}
//	{"type":"checkpoint","size":1000,"note":"<signed note>"}
//	{"type":"frontier","size":5000,"hashes":["<base64>",…]}
//
// in sequence order, each checkpoint right after the record that completes
// it. An export that starts after record 0 begins with a frontier line: the
// roots of the perfect subtrees covering the records before it, from which
// the tree is continued (the next checkpoint authenticates them).
const (
	LineRecord     = "record"
	LineCheckpoint = "checkpoint"
	LineFrontier   = "frontier"
)

// timeLayout is how a record's time is written: UTC, to the microsecond.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// maxLine bounds one line: a record's fields and details are bounded well
// below it, and a frontier holds at most 64 hashes.
const maxLine = 256 << 10

// Line is one line of an export or a sink.
type Line struct {
	Type string
	// Record is set for a record line; Hash is its leaf hash.
	Record *store.AuditRecord
	Hash   tlog.Hash
	// Checkpoint is set for a checkpoint line.
	Checkpoint *store.AuditCheckpoint
	// Frontier is set for a frontier line: Size records are covered by
	// Hashes.
	Size   int64
	Hashes []tlog.Hash
}

type recordJSON struct {
	Type     string          `json:"type"`
	Seq      int64           `json:"seq"`
	Time     string          `json:"time"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Resource string          `json:"resource"`
	Outcome  string          `json:"outcome"`
	Details  json.RawMessage `json:"details"`
	Hash     string          `json:"hash"`
}

type checkpointJSON struct {
	Type string `json:"type"`
	Size int64  `json:"size"`
	Note string `json:"note"`
}

type frontierJSON struct {
	Type   string   `json:"type"`
	Size   int64    `json:"size"`
	Hashes []string `json:"hashes"`
}

// lineJSON is what ParseLine decodes: every field of every type, pointers
// where presence matters.
type lineJSON struct {
	Type     string          `json:"type"`
	Seq      *int64          `json:"seq"`
	Time     string          `json:"time"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Resource string          `json:"resource"`
	Outcome  string          `json:"outcome"`
	Details  json.RawMessage `json:"details"`
	Hash     string          `json:"hash"`
	Size     *int64          `json:"size"`
	Note     string          `json:"note"`
	Hashes   []string        `json:"hashes"`
}

// AppendJSON appends the line's JSON and a newline. Details are written
// byte for byte as stored, so an export re-hashes to the same leaves.
func (l *Line) AppendJSON(b []byte) ([]byte, error) {
	var v any
	switch l.Type {
	case LineRecord:
		r := l.Record
		v = recordJSON{
			Type: LineRecord, Seq: r.Seq, Time: r.Time.UTC().Format(timeLayout),
			Actor: r.Actor, Action: r.Action, Resource: r.Resource, Outcome: r.Outcome,
			Details: json.RawMessage(r.Details), Hash: base64.StdEncoding.EncodeToString(l.Hash[:]),
		}
	case LineCheckpoint:
		v = checkpointJSON{Type: LineCheckpoint, Size: l.Checkpoint.Size, Note: string(l.Checkpoint.Note)}
	case LineFrontier:
		hs := make([]string, len(l.Hashes))
		for i, h := range l.Hashes {
			hs[i] = base64.StdEncoding.EncodeToString(h[:])
		}
		v = frontierJSON{Type: LineFrontier, Size: l.Size, Hashes: hs}
	default:
		return b, fmt.Errorf("audit: encode line: unknown type %q", l.Type)
	}
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf)
	// HTML escaping would rewrite details that a tampered store holds in
	// another form; what is stored is what is exported.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return b, fmt.Errorf("audit: encode %s line: %w", l.Type, err)
	}
	return buf.Bytes(), nil
}

var errLine = errors.New("audit: malformed line")

// ParseLine parses one line of an export. It checks the syntax only;
// Verify checks the content.
func ParseLine(data []byte) (Line, error) {
	if len(data) > maxLine {
		return Line{}, fmt.Errorf("%w: longer than %d bytes", errLine, maxLine)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j lineJSON
	if err := dec.Decode(&j); err != nil {
		return Line{}, fmt.Errorf("%w: %w", errLine, err)
	}
	if dec.More() {
		return Line{}, fmt.Errorf("%w: more than one JSON value", errLine)
	}
	switch j.Type {
	case LineRecord:
		return parseRecordLine(&j)
	case LineCheckpoint:
		if j.Size == nil || *j.Size < 1 || j.Note == "" || j.Seq != nil || j.Hashes != nil {
			return Line{}, fmt.Errorf("%w: a checkpoint has a size above 0 and a note, and nothing else", errLine)
		}
		return Line{Type: LineCheckpoint, Checkpoint: &store.AuditCheckpoint{Size: *j.Size, Note: []byte(j.Note)}}, nil
	case LineFrontier:
		if j.Size == nil || *j.Size < 1 || j.Seq != nil || j.Note != "" {
			return Line{}, fmt.Errorf("%w: a frontier has a size above 0 and hashes, and nothing else", errLine)
		}
		want := frontierIndexes(*j.Size)
		if len(j.Hashes) != len(want) {
			return Line{}, fmt.Errorf("%w: a frontier of size %d has %d hashes, want %d", errLine, *j.Size, len(j.Hashes), len(want))
		}
		l := Line{Type: LineFrontier, Size: *j.Size, Hashes: make([]tlog.Hash, len(j.Hashes))}
		for i, s := range j.Hashes {
			h, err := parseHash(s)
			if err != nil {
				return Line{}, fmt.Errorf("%w: frontier hash %d: %w", errLine, i, err)
			}
			l.Hashes[i] = h
		}
		return l, nil
	default:
		return Line{}, fmt.Errorf("%w: unknown type %q", errLine, j.Type)
	}
}

func parseRecordLine(j *lineJSON) (Line, error) {
	if j.Seq == nil || *j.Seq < 0 || j.Size != nil || j.Note != "" || j.Hashes != nil {
		return Line{}, fmt.Errorf("%w: a record has a seq of 0 or more and no checkpoint fields", errLine)
	}
	t, err := time.Parse(timeLayout, j.Time)
	if err != nil {
		return Line{}, fmt.Errorf("%w: record %d: time is not %s", errLine, *j.Seq, timeLayout)
	}
	if len(j.Details) == 0 || j.Details[0] != '{' {
		return Line{}, fmt.Errorf("%w: record %d: details are not a JSON object", errLine, *j.Seq)
	}
	h, err := parseHash(j.Hash)
	if err != nil {
		return Line{}, fmt.Errorf("%w: record %d: hash: %w", errLine, *j.Seq, err)
	}
	// Canonical details hold no insignificant space; dropping any that a
	// pretty-printer added (moat audit proof prints indented JSON) gives
	// back the bytes that were hashed.
	details := []byte(j.Details)
	if bytes.ContainsAny(details, " \t\r\n") {
		var b bytes.Buffer
		if err := json.Compact(&b, details); err != nil {
			return Line{}, fmt.Errorf("%w: record %d: details: %w", errLine, *j.Seq, err)
		}
		details = b.Bytes()
	}
	return Line{Type: LineRecord, Hash: h, Record: &store.AuditRecord{
		Seq: *j.Seq, Time: t, Actor: j.Actor, Action: j.Action, Resource: j.Resource, Outcome: j.Outcome,
		Details: details,
	}}, nil
}

func parseHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, errors.New("not a base64 SHA-256 hash")
	}
	copy(h[:], b)
	return h, nil
}
