package audit

import (
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// detailsFunc is a DetailsSource made of a function.
type detailsFunc func(w *DetailsWriter)

func (f detailsFunc) WriteDetails(w *DetailsWriter) { f(w) }

// writeAny writes details of the shapes a DetailsWriter takes, keys
// sorted, as a caller knowing their shape would.
func writeAny(w *DetailsWriter, v any) {
	switch x := v.(type) {
	case map[string]any:
		w.Object()
		for _, k := range slices.Sorted(maps.Keys(x)) {
			w.Key(k)
			writeAny(w, x[k])
		}
		w.End()
	case []any:
		w.Array()
		for _, el := range x {
			writeAny(w, el)
		}
		w.End()
	case map[string]int:
		w.IntMap(x)
	case string:
		w.String(x)
	case int:
		w.Int(int64(x))
	case int64:
		w.Int(x)
	case float64:
		w.Float(x)
	case SensitiveValue:
		w.Sensitive(x)
	default:
		panic("writeAny: a value of an unsupported type")
	}
}

// writable keeps of v what a DetailsWriter can write: the members and
// elements of other types, and keys that are not UTF-8, are left out.
func writable(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, el := range x {
			if el, ok := writable(el); ok && utf8.ValidString(k) {
				m[k] = el
			}
		}
		return m, true
	case []any:
		l := []any{}
		for _, el := range x {
			if el, ok := writable(el); ok {
				l = append(l, el)
			}
		}
		return l, true
	case map[string]int:
		for k := range x {
			if !utf8.ValidString(k) {
				return nil, false
			}
		}
		return x, true
	case string, int, int64, float64, SensitiveValue:
		return x, true
	}
	return nil, false
}

// checkWriterMatchesMap fails unless the writer gives the bytes the map
// encoder gives for the same details, or both refuse them.
func checkWriterMatchesMap(t *testing.T, details map[string]any) {
	t.Helper()
	want, wantErr := canonicalDetails(canonicalTestKey, details)
	got, err := writeDetails(canonicalTestKey, detailsFunc(func(w *DetailsWriter) { writeAny(w, details) }))
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("error %v, the map encoder's %v", err, wantErr)
	case err == nil && string(got) != string(want):
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestDetailsWriterMatchesMap(t *testing.T) {
	for _, details := range []map[string]any{
		{},
		{"a": "x"},
		{"requestId": "req_1", "environment": "dev", "usage": map[string]any{"promptTokens": 40, "completionTokens": int64(10)}},
		{"html": "<script>&</script>", "control": "a\x00b\nc\u2028d", "invalid": "a\xffb", "unicode": "Grüße 🙂"},
		{"ints": []any{0, -1, math.MaxInt64, int64(math.MinInt64)}, "floats": []any{0.5, math.Copysign(0, -1), 1e21, 1e-7, 123456789.125, 0.02}},
		{"subjects": []any{Sensitive("ana@example.com"), Sensitive("")}, "findings": map[string]int{"pii.email": 1, "pii.card": 2}},
		{"nested": map[string]any{"b": []any{map[string]any{"y": 1, "x": "2"}, []any{}}, "a": map[string]any{}}},
		{"counts": map[string]int{}, "list": []any{}},
		{"nan": math.NaN()},
		{"inf": []any{math.Inf(1)}},
	} {
		checkWriterMatchesMap(t, details)
	}
}

// TestDetailsWriterNestsAsDeepAsTheMapEncoder checks the bound on both
// sides of it, with objects and arrays, empty and holding a value (fuzzed
// inputs found the writer refusing details nested nine deep that the map
// encoder took, and then taking a value one level below the encoder's
// bound).
func TestDetailsWriterNestsAsDeepAsTheMapEncoder(t *testing.T) {
	for _, containers := range []int{maxWriterDepth - 1, maxWriterDepth, maxWriterDepth + 1} {
		for _, inner := range []struct {
			object, array any
			levels        int // below the innermost container
		}{{map[string]any{}, []any{}, 0}, {map[string]any{"v": 1}, []any{1}, 1}} {
			objects, arrays := inner.object, inner.array
			for range containers - 2 {
				objects = map[string]any{"a": objects}
				arrays = []any{arrays}
			}
			for _, details := range []map[string]any{{"a": objects}, {"a": arrays}} {
				checkWriterMatchesMap(t, details)
				_, err := canonicalDetails(canonicalTestKey, details)
				if want := containers+inner.levels <= maxWriterDepth; (err == nil) != want {
					t.Errorf("%d containers and %d levels below: %v", containers, inner.levels, err)
				}
			}
		}
	}
}

// FuzzDetailsWriter checks the writer against the map encoder on
// generated details.
func FuzzDetailsWriter(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x05\x01a\x01\x03bcd\x01b\x0b\x02\x01c\x09\x02xy"))
	f.Add([]byte("\x03\x01k\x10\x02\x01v\x09\x01s\x01w\x16\x01z\x13\x01q\x0b"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &detailsGenerator{data: data}
		details, _ := writable(g.object(0))
		checkWriterMatchesMap(t, details.(map[string]any))
	})
}

func TestDetailsWriterRefusesWhatIsNotCanonical(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(w *DetailsWriter)
		want  string
	}{
		{"keys out of order", func(w *DetailsWriter) {
			w.Object()
			w.Key("b")
			w.Int(1)
			w.Key("a")
			w.Int(2)
			w.End()
		}, `key "a" comes after "b"`},
		{"a key twice", func(w *DetailsWriter) {
			w.Object()
			w.Key("a")
			w.Int(1)
			w.Key("a")
			w.Int(2)
			w.End()
		}, `key "a" comes after "a"`},
		{"a value without a key", func(w *DetailsWriter) { w.Object(); w.String("x"); w.End() }, "has no key"},
		{"a key without a value", func(w *DetailsWriter) { w.Object(); w.Key("a"); w.End() }, `key "a" has no value`},
		{"a key in an array", func(w *DetailsWriter) {
			w.Object()
			w.Key("a")
			w.Array()
			w.Key("b")
			w.End()
			w.End()
		}, "not where an object's key can be"},
		{"two keys in a row", func(w *DetailsWriter) { w.Object(); w.Key("a"); w.Key("b"); w.Int(1); w.End() }, "not where an object's key can be"},
		{"a key that is not UTF-8", func(w *DetailsWriter) { w.Object(); w.Key("a\xff"); w.Int(1); w.End() }, "not UTF-8"},
		{"an object left open", func(w *DetailsWriter) { w.Object(); w.Key("a"); w.Object() }, "end inside"},
		{"an end too many", func(w *DetailsWriter) { w.Object(); w.End(); w.End() }, "never started"},
		{"two objects", func(w *DetailsWriter) { w.Object(); w.End(); w.Object(); w.End() }, "more than one object"},
		{"an array", func(w *DetailsWriter) { w.Array(); w.End() }, "not an object"},
		{"a string", func(w *DetailsWriter) { w.String("x") }, "not an object"},
		{"nothing", func(w *DetailsWriter) {}, "not an object"},
		{"not a JSON number", func(w *DetailsWriter) { w.Object(); w.Key("a"); w.Float(math.Inf(-1)); w.End() }, "cannot represent"},
		{"too deep", func(w *DetailsWriter) {
			w.Object()
			for range maxWriterDepth {
				w.Key("a")
				w.Object()
			}
		}, "nest deeper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := writeDetails(canonicalTestKey, detailsFunc(tc.write))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// An append whose writer fails adds nothing; one giving details both ways
// is refused.
func TestAppendWithDetailsWriter(t *testing.T) {
	signer, _, hkey := testKeys(t)
	st, _ := openStore(t)
	l := openLog(t, st, signer, hkey, Options{})
	ctx := context.Background()
	good := detailsFunc(func(w *DetailsWriter) {
		w.Object()
		w.Key("subject")
		w.Sensitive(Sensitive("ana@example.com"))
		w.End()
	})
	if _, err := l.Append(ctx, Record{Actor: "key:t", Action: "ai.call", Outcome: OK, DetailsFrom: good}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Record{
		{Actor: "key:t", Action: "ai.call", Outcome: OK, DetailsFrom: detailsFunc(func(w *DetailsWriter) {
			w.Object()
			w.Key("b")
			w.Int(1)
			w.Key("a")
			w.Int(1)
			w.End()
		})},
		{Actor: "key:t", Action: "ai.call", Outcome: OK, DetailsFrom: good, Details: map[string]any{"a": 1}},
	} {
		if _, err := l.Append(ctx, r); !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	}
	recs, err := st.ListAudit(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("the log holds %d records, want the one good one", len(recs))
	}
	want := `{"subject":"` + hmacValue(hkey, "ana@example.com") + `"}`
	if got := string(recs[0].Details); got != want {
		t.Fatalf("details %s, want %s", got, want)
	}
}
