// Package audit keeps Moat's tamper-evident audit trail: an append-only log
// of records hashed as RFC 6962 leaves into a Merkle tree
// (golang.org/x/mod/sumdb/tlog), with checkpoints of the tree signed as
// sumdb notes (Ed25519), sensitive values kept only as HMACs, secondary
// sinks, offline verification, export and inclusion proofs.
//
// The database is the primary copy; Verify trusts nothing in it and
// recomputes the tree from the records themselves.
package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"
)

// Sentinel errors.
var (
	// ErrInvalid reports a record the log refuses to store.
	ErrInvalid = errors.New("audit: invalid record")
	// ErrTimeout reports that an append was not durable within the
	// timeout. The caller must treat the audited action as failed; the
	// records may still reach the log afterwards.
	ErrTimeout = errors.New("audit: append timed out")
	// ErrClosed reports an append to a closed log.
	ErrClosed = errors.New("audit: log closed")
	// ErrSink reports that a required secondary sink did not accept a
	// batch; the records are in the database.
	ErrSink = errors.New("audit: required sink failed")
	// ErrTampered reports a log that fails verification; the error is a
	// *TamperError naming the first bad record.
	ErrTampered = errors.New("audit: log fails verification")
)

// Outcome is how the audited action ended.
type Outcome string

const (
	OK     Outcome = "ok"
	Denied Outcome = "denied"
	Failed Outcome = "failed"
	// Requested records that an action was asked for and is about to run.
	// It is written before the action, so that an action whose audit
	// record cannot be written is not performed; the record of how the
	// action ended follows it with the same request id.
	Requested Outcome = "requested"
)

// Limits on what one record may hold, so a record stays small enough to
// hash, store and export in one line.
const (
	maxFieldLen   = 1024
	maxDetailsLen = 64 << 10
)

// Record is one audit event.
//
// Details is a JSON object. Values marked with Sensitive, at any depth, are
// stored only as "hmac-sha256:<hex>" under the log's HMAC key; everything
// else is stored as given, so callers put digests, ids and counts there,
// never payloads.
type Record struct {
	Seq      int64     `json:"seq"`  // set by the log, dense from 0
	Time     time.Time `json:"time"` // set by the log when zero; kept in UTC to the microsecond
	Actor    string    `json:"actor"`
	Action   string    `json:"action"` // ai.call, secret.read, vendor.update, …
	Resource string    `json:"resource"`
	Outcome  Outcome   `json:"outcome"`
	Details  map[string]any
	// DetailsFrom, when set instead of Details, writes the details itself
	// (see DetailsWriter).
	DetailsFrom DetailsSource `json:"-"`
}

// SensitiveValue is a value that the log stores only as an HMAC. It
// refuses to be marshalled to JSON and prints as a placeholder, so a
// record passed somewhere else by mistake does not leak it.
type SensitiveValue struct{ v string }

// Sensitive marks a detail value to be stored as its HMAC.
func Sensitive(value string) SensitiveValue { return SensitiveValue{value} }

var errSensitiveJSON = errors.New("audit: a sensitive value cannot be marshalled; pass it to a Log")

func (SensitiveValue) MarshalJSON() ([]byte, error) { return nil, errSensitiveJSON }
func (SensitiveValue) String() string               { return "[sensitive]" }
func (SensitiveValue) GoString() string             { return "audit.Sensitive([sensitive])" }

// hmacPrefix starts every HMAC the log stores or prints.
const hmacPrefix = "hmac-sha256:"

// hmacValue is the HMAC-SHA256 of value under key, as the log stores it.
func hmacValue(key []byte, value string) string {
	return hmacPrefix + hex.EncodeToString(hmacSum(key, value))
}

func hmacSum(key []byte, value string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(value))
	return m.Sum(nil)
}

// canonicalDetails returns the canonical JSON of details: sensitive values
// replaced by their HMACs, then encoded with object keys sorted, no
// insignificant space, numbers as written, and <, >, & escaped (what
// encoding/json does for a map[string]any).
func canonicalDetails(key []byte, details map[string]any) ([]byte, error) {
	if details == nil {
		return []byte("{}"), nil
	}
	b, err := encodeDetails(key, details)
	if errors.Is(err, errNeedsRoundTrip) {
		return canonicalDetailsViaJSON(key, details)
	}
	return b, err
}

// canonicalDetailsViaJSON is the definition of the canonical encoding,
// which encodeDetails reproduces faster for the common shapes.
func canonicalDetailsViaJSON(key []byte, details map[string]any) ([]byte, error) {
	replaced, err := replaceSensitive(key, details, 0)
	if err != nil {
		return nil, err
	}
	first, err := json.Marshal(replaced)
	if err != nil {
		return nil, err
	}
	// A round trip through any with UseNumber sorts the keys of nested
	// structs and maps alike, whatever types the caller used.
	return canonicalJSON(first)
}

// canonicalJSON re-encodes a JSON object canonically.
func canonicalJSON(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, errors.New("details are not a JSON object")
	}
	return json.Marshal(v)
}

// maxDetailsDepth bounds the walk over caller-supplied details.
const maxDetailsDepth = 32

func replaceSensitive(key []byte, v any, depth int) (any, error) {
	if depth > maxDetailsDepth {
		return nil, errors.New("details nest too deep")
	}
	switch x := v.(type) {
	case SensitiveValue:
		return hmacValue(key, x.v), nil
	case *SensitiveValue:
		return hmacValue(key, x.v), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := replaceSensitive(key, e, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := replaceSensitive(key, e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]string, []string, string, bool, nil, json.Number, json.RawMessage,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return x, nil
	default:
		// Other types (structs, typed maps) are marshalled as they are; a
		// SensitiveValue inside one fails the marshalling instead of
		// leaking.
		return x, nil
	}
}

// stored is a record as hashed and kept: Details is canonical JSON.
type stored struct {
	Seq      int64
	Time     time.Time
	Actor    string
	Action   string
	Resource string
	Outcome  string
	Details  []byte
}

// recordVersion starts the canonical encoding, so a future format can be
// told apart.
const recordVersion = "moat-audit-record/v1"

// appendCanonical appends the canonical encoding of r, the bytes whose
// tlog.RecordHash is the record's leaf hash:
//
//	moat-audit-record/v1 \n
//	<seq> \n <time: unix microseconds> \n
//	<len(actor)>:<actor> \n <len(action)>:<action> \n
//	<len(resource)>:<resource> \n <len(outcome)>:<outcome> \n
//	<len(details)>:<details, canonical JSON>
//
// (without the spaces; numbers in decimal, lengths in bytes). The length
// prefixes make the encoding injective whatever the fields contain.
func appendCanonical(b []byte, r *stored) []byte {
	b = append(b, recordVersion...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, '\n')
	b = strconv.AppendInt(b, r.Time.UnixMicro(), 10)
	for _, f := range [...]string{r.Actor, r.Action, r.Resource, r.Outcome} {
		b = append(b, '\n')
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(b, ':')
		b = append(b, f...)
	}
	b = append(b, '\n')
	b = strconv.AppendInt(b, int64(len(r.Details)), 10)
	b = append(b, ':')
	return append(b, r.Details...)
}

// leafHash is the record's RFC 6962 leaf hash.
func leafHash(buf []byte, r *stored) (tlog.Hash, []byte) {
	buf = appendCanonical(buf[:0], r)
	return tlog.RecordHash(buf), buf
}

// validField checks a short text field.
func validField(name, v string, required bool) error {
	switch {
	case required && v == "":
		return fmt.Errorf("%w: %s is required", ErrInvalid, name)
	case len(v) > maxFieldLen:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, name, maxFieldLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, name)
	}
	return nil
}

// prepare validates r and turns it into what the log stores.
func prepare(key []byte, r Record, now time.Time) (stored, error) {
	for _, f := range []struct {
		name, v  string
		required bool
	}{{"actor", r.Actor, true}, {"action", r.Action, true}, {"resource", r.Resource, false}} {
		if err := validField(f.name, f.v, f.required); err != nil {
			return stored{}, err
		}
	}
	switch r.Outcome {
	case OK, Denied, Failed, Requested:
	default:
		return stored{}, fmt.Errorf("%w: outcome %q is not ok, denied, failed or requested", ErrInvalid, r.Outcome)
	}
	var details []byte
	var err error
	switch {
	case r.DetailsFrom != nil && r.Details != nil:
		return stored{}, fmt.Errorf("%w: details of %s are given both as a map and as a writer", ErrInvalid, r.Action)
	case r.DetailsFrom != nil:
		if details, err = writeDetails(key, r.DetailsFrom); err != nil {
			// Its errors name keys, never values.
			return stored{}, fmt.Errorf("%w: details of %s: %w", ErrInvalid, r.Action, err)
		}
	default:
		details, err = canonicalDetails(key, r.Details)
	}
	if err != nil {
		// The error may quote a value: name only what went wrong.
		var syn *json.SyntaxError
		if errors.Is(err, errSensitiveJSON) || errors.As(err, &syn) {
			return stored{}, fmt.Errorf("%w: details of %s: %w", ErrInvalid, r.Action, errSensitiveJSON)
		}
		return stored{}, fmt.Errorf("%w: details of %s cannot be encoded as JSON", ErrInvalid, r.Action)
	}
	if len(details) > maxDetailsLen {
		return stored{}, fmt.Errorf("%w: details of %s are %d bytes, more than %d", ErrInvalid, r.Action, len(details), maxDetailsLen)
	}
	t := r.Time
	if t.IsZero() {
		t = now
	}
	return stored{
		Time:  time.UnixMicro(t.UnixMicro()).UTC(),
		Actor: r.Actor, Action: r.Action, Resource: r.Resource, Outcome: string(r.Outcome),
		Details: details,
	}, nil
}

// HMAC returns the HMAC of value under an audit HMAC key in the form the
// log stores ("hmac-sha256:<hex>"), for tools that search without a Log.
func HMAC(key []byte, value string) string { return hmacValue(key, value) }
