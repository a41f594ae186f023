package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/detect"
	"github.com/moatproject/moat/internal/jsontext"
)

// maxRecordApplied bounds Record.Applied: a prompt with thousands of
// findings is still one bounded audit event (Findings and Decisions keep
// the full counts).
const maxRecordApplied = 256

// maxRecordSubjects bounds Record.Subjects: a prompt listing a thousand
// customers is still one bounded audit event (Findings keeps the counts).
const maxRecordSubjects = 100

// maxSubjectBytes is the longest value kept as a subject: nobody searches
// for a longer one (an erasure takes identifiers of at most 1024 bytes),
// and a declared data item may be a whole document.
const maxSubjectBytes = 1024

// requestIDEncoding is base32's standard alphabet in lower case: the
// standard encoding, lowered, without a pass to lower it.
var requestIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewRequestID returns "req_" and 16 random base32 characters (80 bits):
// the id of a gateway call, and of any exchange the API answers without
// one (refused before the gateway, or a mutating request), so that every
// answer carries an id a log line or an audit record can be matched with.
func NewRequestID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails; it crashes the program instead
	var id [4 + 16]byte
	copy(id[:], "req_")
	requestIDEncoding.Encode(id[4:], b[:])
	return string(id[:])
}

// digestMessages is the hex SHA-256 of the messages' JSON, as sent: the
// bytes json.Marshal gives, encoded straight into the hash rather than
// into a copy of the whole prompt.
func digestMessages(msgs []connectors.Message) string {
	h := sha256.New()
	if !messageJSONIsPlain {
		if err := json.NewEncoder(untilNewline{h}).Encode(msgs); err != nil {
			// Messages are strings only; this cannot fail, but a digest of
			// nothing must never pass for one of something.
			return ""
		}
		return hexDigest(h.Sum(nil))
	}
	w := digestWriters.Get().(*jsonDigestWriter)
	w.h, w.buf = h, w.buf[:0]
	w.writeMessages(msgs)
	w.flush()
	var sum [sha256.Size]byte
	// The buffer held the prompt: it is cleared before it is pooled, so no
	// prompt outlives its call.
	clear(w.buf[:cap(w.buf)])
	w.h = nil
	if cap(w.buf) <= 16*digestBufferBytes {
		digestWriters.Put(w)
	}
	return hexDigest(h.Sum(sum[:0]))
}

// hexDigest is a SHA-256 sum in lower-case hex, encoded on the stack so
// that the string is the only allocation.
func hexDigest(sum []byte) string {
	var out [2 * sha256.Size]byte
	return string(hex.AppendEncode(out[:0], sum))
}

// messageJSONIsPlain says connectors.Message is what jsonDigestWriter
// writes by hand: a role and a content, plain strings tagged "role" and
// "content", with no marshaler anywhere. Should the type change,
// digestMessages falls back to encoding/json, so the digest stays
// json.Marshal's either way.
var messageJSONIsPlain = func() bool {
	t := reflect.TypeFor[connectors.Message]()
	marshals := func(t reflect.Type) bool {
		for _, m := range []reflect.Type{reflect.TypeFor[json.Marshaler](), reflect.TypeFor[encoding.TextMarshaler]()} {
			if t.Implements(m) || reflect.PointerTo(t).Implements(m) {
				return true
			}
		}
		return false
	}
	if t.NumField() != 2 || marshals(t) {
		return false
	}
	for i, tag := range []string{"role", "content"} {
		f := t.Field(i)
		if f.Tag != reflect.StructTag(`json:"`+tag+`"`) || f.Type.Kind() != reflect.String || marshals(f.Type) {
			return false
		}
	}
	return true
}()

// jsonDigestWriter writes messages as json.Marshal encodes them into a
// hash, through a buffer: hashing in small pieces costs more per byte.
// (The hash does not take strings, and copying into the buffer costs less
// than converting each piece.)
type jsonDigestWriter struct {
	h   hash.Hash
	buf []byte
}

// digestBufferBytes is when the buffer is handed to the hash.
const digestBufferBytes = 4 << 10

var digestWriters = sync.Pool{New: func() any { return &jsonDigestWriter{buf: make([]byte, 0, digestBufferBytes+64)} }}

func (w *jsonDigestWriter) flush() {
	w.h.Write(w.buf)
	w.buf = w.buf[:0]
}

// write appends b, handing the buffer to the hash when it is full. Only
// punctuation is written here, so it need not be split to fit: the hash
// is the same however its input is cut.
func (w *jsonDigestWriter) write(b string) {
	w.buf = append(w.buf, b...)
	w.flushIfFull()
}

func (w *jsonDigestWriter) flushIfFull() {
	if len(w.buf) >= digestBufferBytes {
		w.flush()
	}
}

func (w *jsonDigestWriter) writeMessages(msgs []connectors.Message) {
	if msgs == nil {
		w.write("null")
		return
	}
	w.write("[")
	for i, m := range msgs {
		if i > 0 {
			w.write(",")
		}
		w.write(`{"role":`)
		w.writeString(string(m.Role))
		w.write(`,"content":`)
		w.writeString(m.Content)
		w.write("}")
	}
	w.write("]")
}

// writeString writes s quoted as json.Marshal quotes a string. A long
// string goes into the buffer whole, which then holds about as much as the
// prompt itself for a moment.
func (w *jsonDigestWriter) writeString(s string) {
	w.buf = jsontext.AppendString(w.buf, s, true)
	w.flushIfFull()
}

// untilNewline drops the newline Encoder.Encode puts after the value, so
// the digest stays that of json.Marshal's output. Compact JSON holds no raw
// newline, so a trailing one can only be the Encoder's, however it splits
// its writes.
type untilNewline struct{ w io.Writer }

func (u untilNewline) Write(b []byte) (int, error) {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		_, err := u.w.Write(b[:n-1])
		return n, err
	}
	return u.w.Write(b)
}

// digestText is the hex SHA-256 of text. The text goes to the hash through
// a buffer on the stack: converted whole, an answer was copied to the heap.
func digestText(text string) string {
	h := sha256.New()
	var chunk [512]byte
	for len(text) > 0 {
		n := copy(chunk[:], text)
		h.Write(chunk[:n])
		text = text[n:]
	}
	var sum [sha256.Size]byte
	return hexDigest(h.Sum(sum[:0]))
}

// addApplied counts the actions taken and keeps the first maxRecordApplied
// of them (types, spans and actions only: Applied holds no value).
func (r *Record) addApplied(applied []Applied) {
	if len(applied) == 0 {
		return
	}
	if r.Decisions == nil {
		r.Decisions = map[string]int{}
	}
	if r.Applied == nil {
		r.Applied = make([]Applied, 0, min(len(applied), maxRecordApplied))
	}
	for _, a := range applied {
		r.Decisions[string(a.Action)]++
		if len(r.Applied) < maxRecordApplied {
			r.Applied = append(r.Applied, a)
		}
	}
}

// addSubjects keeps the personal identifiers among findings of text
// (code-point offsets, as detect.Scan gives them).
func (r *Record) addSubjects(text string, findings []detect.Finding) {
	if len(r.Subjects) >= maxRecordSubjects || !slices.ContainsFunc(findings, func(f detect.Finding) bool { return isSubject(f.Type) }) {
		return
	}
	texts := findingTexts(text, findings)
	for i, f := range findings {
		r.addSubject(f.Type, texts[i])
	}
}

// addSubject keeps value, of class, in its normalised form and only as
// audit.Sensitive, once, when class identifies a person.
func (r *Record) addSubject(class, value string) {
	if !isSubject(class) || len(value) > maxSubjectBytes || len(r.Subjects) >= maxRecordSubjects {
		return
	}
	n := detect.Normalize(class, value)
	if n == "" {
		return
	}
	if s := audit.Sensitive(n); !slices.Contains(r.Subjects, s) {
		if r.Subjects == nil {
			r.Subjects = make([]audit.SensitiveValue, 0, 4) // a prompt's few people, grown once
		}
		r.Subjects = append(r.Subjects, s)
	}
}

// isSubject says which classes identify a person: the pii.* ones.
func isSubject(class string) bool { return strings.HasPrefix(class, "pii.") }

func (r *Record) addFinding(class string) {
	if r.Findings == nil {
		r.Findings = map[string]int{}
	}
	r.Findings[class]++
}

// addChecks adds the kinds of problems, once each, sorted.
func (r *Record) addChecks(probs []CheckProblem) {
	for _, p := range probs {
		found := false
		for _, k := range r.Checks {
			if k == p.Kind {
				found = true
				break
			}
		}
		if !found {
			r.Checks = append(r.Checks, p.Kind)
		}
	}
	sort.Strings(r.Checks)
}

// writeRecord hands the record to the recorder. A recorder that fails, or
// panics, fails the call: no call goes unrecorded.
func writeRecord(ctx context.Context, rec Recorder, r Record) error {
	return callRecorder("record", func() error { return rec.Record(context.WithoutCancel(ctx), r) })
}

// writeStart records the start of a call, when the recorder keeps starts;
// like writeRecord, a failure or a panic fails the call.
func writeStart(ctx context.Context, rec Recorder, r Record) error {
	sr, ok := rec.(StartRecorder)
	if !ok {
		return nil
	}
	return callRecorder("record start", func() error { return sr.RecordStart(context.WithoutCancel(ctx), r) })
}

// callRecorder runs write, turning its error or panic into the gateway's
// error for what it writes.
func callRecorder(what string, write func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("gateway: %s: recorder panicked (%T)", what, p)
		}
	}()
	if err := write(); err != nil {
		return fmt.Errorf("gateway: %s: %w", what, err)
	}
	return nil
}
