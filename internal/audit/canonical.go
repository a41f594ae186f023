package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/jsontext"
)

// The details of every record are encoded on the appender's path, so the
// common shapes (maps, slices, strings, numbers, sensitive values) are
// written directly instead of through encoding/json three times
// (marshal, decode, marshal). The output is byte for byte what that round
// trip produces (canonicalDetailsViaJSON, which FuzzCanonicalDetails
// compares against); values of other types (structs, typed maps,
// marshalers) are encoded by encoding/json and then written the same way.

// errNeedsRoundTrip sends details the direct encoder cannot reproduce
// exactly to the encoding/json round trip.
var errNeedsRoundTrip = errors.New("audit: details need the encoding/json round trip")

var errDetailsTooDeep = errors.New("details nest too deep")

// detailsEncoder holds the scratch space of one encoding.
type detailsEncoder struct {
	key []byte
	// mac is keyed with macKey, and kept across uses of the encoder: most
	// records are encoded under one log's key, and keying an HMAC costs
	// two SHA-256 blocks and an allocation.
	mac    hash.Hash
	macKey []byte
	buf    []byte
	keys   []string // a stack of the keys of the objects being written
	// sortedKeys holds, by their number, the sorted keys of the last
	// top-level objects written: a log's records come in few shapes, and
	// checking that a map has the same keys costs less than sorting them.
	sortedKeys [32][]string
	scratch    []byte
	writer     DetailsWriter // for a DetailsSource
}

var detailsEncoders = sync.Pool{New: func() any { return &detailsEncoder{buf: make([]byte, 0, 1024)} }}

// encodeDetails returns the canonical JSON of a non-nil details map.
func encodeDetails(key []byte, details map[string]any) ([]byte, error) {
	return withEncoder(key, func(e *detailsEncoder, b []byte) ([]byte, error) {
		return e.object(b, details, 0, false)
	})
}

// withEncoder lends encode a pooled encoder keyed with key, and an empty
// buffer to append to, and returns a copy of what it wrote.
func withEncoder(key []byte, encode func(e *detailsEncoder, b []byte) ([]byte, error)) ([]byte, error) {
	e := detailsEncoders.Get().(*detailsEncoder)
	e.key = key
	b, err := encode(e, e.buf[:0])
	if b != nil {
		e.buf = b[:0]
	}
	e.key = nil
	if cap(e.buf) <= maxDetailsLen && cap(e.keys) <= 4096 {
		detailsEncoders.Put(e)
	}
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// value writes v, at depth levels below the details object, as the round
// trip would. The round trip replaces sensitive values in a copy of the
// maps and slices it walks (map[string]any and []any from the top), so
// there a nil map or slice is written empty. Inside any other container
// (opaque) encoding/json meets the values as given: a nil map or slice is
// null and a sensitive value fails the encoding.
func (e *detailsEncoder) value(b []byte, v any, depth int, opaque bool) ([]byte, error) {
	if depth > maxDetailsDepth {
		if opaque {
			// encoding/json has its own bounds and cycle checks.
			return b, errNeedsRoundTrip
		}
		return b, errDetailsTooDeep
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float64:
		return appendJSONFloat(b, x, 64)
	case float32:
		return appendJSONFloat(b, float64(x), 32)
	case json.Number:
		return appendJSONNumber(b, x)
	case SensitiveValue:
		if opaque {
			return b, errSensitiveJSON
		}
		return e.appendHMAC(b, x.v), nil
	case *SensitiveValue:
		switch {
		case x == nil && opaque:
			return b, errNeedsRoundTrip
		case x == nil:
			return b, errors.New("a nil sensitive value")
		case opaque:
			return b, errSensitiveJSON
		}
		return e.appendHMAC(b, x.v), nil
	case map[string]any:
		if x == nil && opaque {
			return append(b, "null"...), nil
		}
		return e.object(b, x, depth, opaque)
	case []any:
		if x == nil && opaque {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, el := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = e.value(b, el, depth+1, opaque); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case []map[string]any:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, m := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = e.value(b, m, depth+1, true); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case map[string]string:
		return appendStringMap(e, b, x, appendJSONString)
	case map[string]int:
		return appendIntMap(e, b, x)
	case []string:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, s := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, s)
		}
		return append(b, ']'), nil
	default:
		return appendViaJSON(b, x)
	}
}

// appendHMAC writes the HMAC of a sensitive value as hmacValue formats it
// (a string that needs no escaping).
func (e *detailsEncoder) appendHMAC(b []byte, v string) []byte {
	if e.mac == nil || !bytes.Equal(e.macKey, e.key) {
		e.mac, e.macKey = hmac.New(sha256.New, e.key), e.key
	} else {
		e.mac.Reset()
	}
	// The value goes through scratch space, cleared after: converted, it
	// was a copy on the heap, and so was the sum.
	if cap(e.scratch) < sha256.Size {
		e.scratch = make([]byte, 0, 64)
	}
	e.scratch = append(e.scratch[:0], v...)
	e.mac.Write(e.scratch)
	clear(e.scratch)
	sum := e.mac.Sum(e.scratch[:0])
	b = append(b, '"')
	b = append(b, hmacPrefix...)
	return append(hex.AppendEncode(b, sum), '"')
}

// object writes a map[string]any with its keys sorted.
func (e *detailsEncoder) object(b []byte, m map[string]any, depth int, opaque bool) ([]byte, error) {
	var mark int
	var err error
	if depth == 0 {
		mark, err = e.pushTopKeys(m)
	} else {
		mark, err = pushKeys(e, m)
	}
	defer e.popKeys(mark)
	if err != nil {
		return b, err
	}
	b = append(b, '{')
	// Nested objects push their keys above these; if that moves the
	// stack, this loop still reads the old copy, which they leave alone.
	for i, k := range e.keys[mark:] {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		if b, err = e.value(b, m[k], depth+1, opaque); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// appendStringMap writes a map of strings to scalars with its keys sorted.
func appendStringMap[V any](e *detailsEncoder, b []byte, m map[string]V, appendValue func([]byte, V) []byte) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	mark, err := pushKeys(e, m)
	defer e.popKeys(mark)
	if err != nil {
		return b, err
	}
	b = append(b, '{')
	for i, k := range e.keys[mark:] {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendValue(b, m[k])
	}
	return append(b, '}'), nil
}

// appendIntMap writes a map of counts with its keys sorted.
func appendIntMap(e *detailsEncoder, b []byte, m map[string]int) ([]byte, error) {
	return appendStringMap(e, b, m, func(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) })
}

// pushKeys pushes m's keys, sorted, on e's key stack and returns where
// they start; popKeys(mark) takes them off again.
func pushKeys[V any](e *detailsEncoder, m map[string]V) (mark int, err error) {
	mark = len(e.keys)
	for k := range m {
		if !utf8.ValidString(k) {
			// The round trip turns invalid bytes into U+FFFD before
			// sorting, which may make two keys one.
			return mark, errNeedsRoundTrip
		}
		e.keys = append(e.keys, k)
	}
	slices.Sort(e.keys[mark:])
	return mark, nil
}

// pushTopKeys is pushKeys for the details object, with the sorted keys of
// a map of the same keys reused.
func (e *detailsEncoder) pushTopKeys(m map[string]any) (int, error) {
	if len(m) >= len(e.sortedKeys) {
		return pushKeys(e, m)
	}
	if cached := e.sortedKeys[len(m)]; cached != nil && hasKeys(m, cached) {
		mark := len(e.keys)
		e.keys = append(e.keys, cached...)
		return mark, nil
	}
	mark, err := pushKeys(e, m)
	if err == nil {
		e.sortedKeys[len(m)] = slices.Clone(e.keys[mark:])
	}
	return mark, err
}

// hasKeys reports whether m has every one of keys, as many as it has.
func hasKeys(m map[string]any, keys []string) bool {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

func (e *detailsEncoder) popKeys(mark int) {
	clear(e.keys[mark:])
	e.keys = e.keys[:mark]
}

// appendViaJSON writes a value of any other type as encoding/json
// marshals it and the round trip then re-encodes it.
func appendViaJSON(b []byte, v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var decoded any
	if err := dec.Decode(&decoded); err != nil {
		return b, err
	}
	return appendDecoded(b, decoded), nil
}

// appendDecoded writes a value decoded by encoding/json with UseNumber,
// whose nesting the decoder has already bounded.
func appendDecoded(b []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		return appendJSONString(b, x)
	case json.Number:
		return append(b, x...)
	case bool:
		return strconv.AppendBool(b, x)
	case []any:
		b = append(b, '[')
		for i, el := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendDecoded(b, el)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendDecoded(b, x[k])
		}
		return append(b, '}')
	default: // nil
		return append(b, "null"...)
	}
}

// appendJSONString writes s as encoding/json does with HTML escaping, after
// the round trip: an invalid byte has become U+FFFD itself, not its escape.
func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = string([]rune(s)) // each invalid byte becomes U+FFFD
	}
	return jsontext.AppendString(b, s, true)
}

// appendJSONFloat writes f as encoding/json does (ES6 number formatting).
func appendJSONFloat(b []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, errors.New("details hold a number JSON cannot represent")
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// e-09 becomes e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// appendJSONNumber writes a json.Number as encoding/json does: empty is 0,
// anything that is not a JSON number is refused.
func appendJSONNumber(b []byte, n json.Number) ([]byte, error) {
	if n == "" {
		return append(b, '0'), nil
	}
	if !isJSONNumber(string(n)) {
		return b, errors.New("details hold an invalid json.Number")
	}
	return append(b, n...), nil
}

// isJSONNumber reports whether s is a number in JSON's grammar (RFC 8259
// section 6).
func isJSONNumber(s string) bool {
	if s != "" && s[0] == '-' {
		s = s[1:]
	}
	digits := func() bool {
		n := 0
		for n < len(s) && '0' <= s[n] && s[n] <= '9' {
			n++
		}
		s = s[n:]
		return n > 0
	}
	switch {
	case s == "":
		return false
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		digits()
	default:
		return false
	}
	if s != "" && s[0] == '.' {
		s = s[1:]
		if !digits() {
			return false
		}
	}
	if s != "" && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s != "" && (s[0] == '+' || s[0] == '-') {
			s = s[1:]
		}
		if !digits() {
			return false
		}
	}
	return s == ""
}
