package audit

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/jsontext"
)

// DetailsSource writes a record's details itself (Record.DetailsFrom), for
// a caller on a hot path that knows their shape: it builds no map, and the
// log sorts no keys.
type DetailsSource interface {
	WriteDetails(w *DetailsWriter)
}

// DetailsWriter writes a record's details in the form the log keeps them,
// the canonical JSON that a Details map would be encoded as. Keys must
// come in sorted order (byte-wise), each once, and the details must be one
// object; the writer checks all of that and fails the append otherwise,
// so that what it writes is byte for byte what the map would give.
// Strings, numbers and sensitive values are written as the map encoder
// writes them. The log hands one to DetailsSource.WriteDetails; it has no
// other use.
type DetailsWriter struct {
	e      *detailsEncoder
	b      []byte
	levels [maxWriterDepth]writerLevel
	depth  int
	err    error
}

// maxWriterDepth bounds the containers a DetailsWriter has open at once:
// the details object and maxDetailsDepth levels below it. As in the map
// encoder, a value, whatever its kind, may sit at most maxDetailsDepth
// levels down, so that both refuse the same details.
const maxWriterDepth = maxDetailsDepth + 1

type writerLevel struct {
	array   bool
	n       int    // members or elements written
	lastKey string // the last key written, in an object
	keyed   bool   // a key was written and waits for its value
}

// Object starts an object, as the details or as a value.
func (w *DetailsWriter) Object() { w.open('{', false) }

// Array starts an array.
func (w *DetailsWriter) Array() { w.open('[', true) }

func (w *DetailsWriter) open(c byte, array bool) {
	if !w.value() {
		return
	}
	w.levels[w.depth] = writerLevel{array: array}
	w.depth++
	w.b = append(w.b, c)
}

// End closes the innermost object or array.
func (w *DetailsWriter) End() {
	if w.err != nil {
		return
	}
	if w.depth == 0 {
		w.fail(errors.New("details end an object or array never started"))
		return
	}
	l := &w.levels[w.depth-1]
	if l.keyed {
		w.fail(fmt.Errorf("details key %q has no value", l.lastKey))
		return
	}
	w.depth--
	if l.array {
		w.b = append(w.b, ']')
	} else {
		w.b = append(w.b, '}')
	}
}

// Key writes an object's next key; its value follows.
func (w *DetailsWriter) Key(k string) {
	if w.err != nil {
		return
	}
	if w.depth == 0 || w.levels[w.depth-1].array || w.levels[w.depth-1].keyed {
		w.fail(fmt.Errorf("details key %q is not where an object's key can be", k))
		return
	}
	l := &w.levels[w.depth-1]
	if !utf8.ValidString(k) {
		w.fail(errors.New("a details key is not UTF-8"))
		return
	}
	if l.n > 0 {
		if k <= l.lastKey {
			w.fail(fmt.Errorf("details key %q comes after %q: keys must be sorted and unique", k, l.lastKey))
			return
		}
		w.b = append(w.b, ',')
	}
	l.n++
	l.lastKey, l.keyed = k, true
	w.b = jsontext.AppendString(w.b, k, true) // valid UTF-8, checked above
	w.b = append(w.b, ':')
}

// String writes a string value.
func (w *DetailsWriter) String(s string) {
	if w.value() {
		w.b = appendJSONString(w.b, s)
	}
}

// Int writes an integer value.
func (w *DetailsWriter) Int(n int64) {
	if w.value() {
		w.b = strconv.AppendInt(w.b, n, 10)
	}
}

// Float writes a number as encoding/json writes a float64.
func (w *DetailsWriter) Float(f float64) {
	if !w.value() {
		return
	}
	b, err := appendJSONFloat(w.b, f, 64)
	if err != nil {
		w.fail(err)
		return
	}
	w.b = b
}

// Sensitive writes a value the log keeps only as its HMAC.
func (w *DetailsWriter) Sensitive(v SensitiveValue) {
	if w.value() {
		w.b = w.e.appendHMAC(w.b, v.v)
	}
}

// IntMap writes a map of counts as an object, its keys sorted.
func (w *DetailsWriter) IntMap(m map[string]int) {
	if !w.value() {
		return
	}
	b, err := appendIntMap(w.e, w.b, m)
	if err != nil {
		w.fail(errors.New("a details key is not UTF-8"))
		return
	}
	w.b = b
}

// value reports whether a value may be written here, and writes the comma
// that separates it from an array's previous element.
func (w *DetailsWriter) value() bool {
	if w.err != nil {
		return false
	}
	if w.depth == maxWriterDepth {
		w.fail(fmt.Errorf("details nest deeper than %d levels", maxDetailsDepth))
		return false
	}
	if w.depth == 0 {
		if len(w.b) > 0 {
			w.fail(errors.New("details are more than one object"))
			return false
		}
		return true
	}
	l := &w.levels[w.depth-1]
	switch {
	case l.array:
		if l.n > 0 {
			w.b = append(w.b, ',')
		}
		l.n++
	case l.keyed:
		l.keyed = false
	default:
		w.fail(errors.New("a details value has no key"))
		return false
	}
	return true
}

func (w *DetailsWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// writeDetails returns the details src writes.
func writeDetails(key []byte, src DetailsSource) ([]byte, error) {
	return withEncoder(key, func(e *detailsEncoder, b []byte) ([]byte, error) {
		w := &e.writer
		*w = DetailsWriter{e: e, b: b}
		src.WriteDetails(w)
		b, err := w.b, w.err
		switch {
		case err != nil:
		case w.depth > 0:
			err = errors.New("details end inside an object or array")
		case len(b) == 0 || b[0] != '{':
			err = errors.New("details are not an object")
		}
		*w = DetailsWriter{}
		return b, err
	})
}
