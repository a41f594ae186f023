package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"
)

var canonicalTestKey = []byte("0123456789abcdef0123456789abcdef")

// checkSameAsRoundTrip fails unless canonicalDetails gives the bytes of the
// encoding/json round trip that defines the encoding, or both refuse.
func checkSameAsRoundTrip(t *testing.T, details map[string]any) {
	t.Helper()
	want, wantErr := canonicalDetailsViaJSON(canonicalTestKey, details)
	got, err := canonicalDetails(canonicalTestKey, details)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("error %v, the round trip's %v", err, wantErr)
	case err == nil && string(got) != string(want):
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

type namedString string

type detailsStruct struct {
	Z string `json:"z"`
	A any    `json:"a,omitempty"`
}

func TestCanonicalDetailsMatchesRoundTrip(t *testing.T) {
	t.Parallel()
	deep := map[string]any{}
	for m, i := deep, 0; i < maxDetailsDepth+2; i++ {
		next := map[string]any{}
		m["n"] = next
		m = next
	}
	tests := []struct {
		name    string
		details map[string]any
	}{
		{"empty", map[string]any{}},
		{"scalars", map[string]any{
			"s": "plain", "t": true, "f": false, "n": nil, "i": -42, "i8": int8(-8), "i16": int16(16), "i32": int32(-32),
			"i64": int64(math.MinInt64), "u": uint(7), "u8": uint8(255), "u16": uint16(65535), "u32": uint32(1 << 31),
			"u64": uint64(math.MaxUint64),
		}},
		{"floats", map[string]any{
			"a": 0.0, "b": math.Copysign(0, -1), "c": 1.5, "d": 1e21, "e": 1e20, "f": 1e-6, "g": 1e-7, "h": -123456.789e-30,
			"i": float32(1e-7), "j": float32(3.4e38), "k": float32(0.1), "l": math.SmallestNonzeroFloat64, "m": math.MaxFloat64,
		}},
		{"escapes", map[string]any{
			"html": "<a href=\"x\">&amp;</a>", "ctl": "\x00\x01\b\f\n\r\t\x1f\x7f", "sep": "a\u2028b\u2029c",
			"bad": "ok\xffok\xc3", "uni": "日本語 ☃ 😀", "back\\slash": `\"`, "<key>": 1,
		}},
		{"numbers", map[string]any{"a": json.Number("12345678901234567890"), "b": json.Number("-0.5e+10"), "c": json.Number("")}},
		{"invalid number", map[string]any{"a": json.Number("1.")}},
		{"not a number", map[string]any{"a": math.NaN()}},
		{"infinity", map[string]any{"a": float32(math.Inf(-1))}},
		{"sensitive", map[string]any{"v": Sensitive("sk_live_x"), "p": &SensitiveValue{"y"}, "l": []any{Sensitive("z")}}},
		{"sensitive in a struct", map[string]any{"s": detailsStruct{Z: "1", A: Sensitive("x")}}},
		{"sensitive in a slice of maps", map[string]any{"s": []map[string]any{{"v": Sensitive("x")}}}},
		{"nil containers", map[string]any{
			"m": map[string]any(nil), "l": []any(nil), "ss": map[string]string(nil), "si": map[string]int(nil),
			"ls": []string(nil), "lm": []map[string]any(nil), "inner": []map[string]any{{"m": map[string]any(nil), "l": []any(nil)}, nil},
		}},
		{"typed", map[string]any{
			"ss": map[string]string{"b": "2", "a": "<1>"}, "si": map[string]int{"z": 1, "y": -2}, "ls": []string{"x", "&"},
			"named": namedString("n"), "struct": detailsStruct{Z: "z", A: map[string]any{"q": 1, "p": []any{2.5}}},
			"time": time.Date(2026, 11, 25, 1, 2, 3, 4, time.UTC), "raw": json.RawMessage(` { "b" : 1 , "a" : [ 1.0 ] } `),
			"attempts": []map[string]any{{"target": "openai", "durationUs": int64(1200), "error": "timeout"}},
		}},
		{"invalid raw message", map[string]any{"raw": json.RawMessage(`{`)}},
		{"keys that collide once made UTF-8", map[string]any{"a\xff": 1, "a\xfe": 2, "a\uFFFD": 3}},
		{"collision inside a typed map", map[string]any{"m": map[string]int{"a\xff": 1, "a\xfe": 2}}},
		{"too deep", deep},
		{"cycle", func() map[string]any { m := map[string]any{}; m["self"] = m; return m }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkSameAsRoundTrip(t, tc.details)
		})
	}
}

func TestCanonicalDetailsRefusesNilSensitive(t *testing.T) {
	t.Parallel()
	if _, err := canonicalDetails(canonicalTestKey, map[string]any{"v": (*SensitiveValue)(nil)}); err == nil {
		t.Fatal("a nil *SensitiveValue was encoded")
	}
}

func TestCanonicalDetailsSensitiveErrorIsKept(t *testing.T) {
	t.Parallel()
	for _, d := range []map[string]any{
		{"s": detailsStruct{A: Sensitive("x")}},
		{"s": []map[string]any{{"v": Sensitive("x")}}},
	} {
		if _, err := canonicalDetails(canonicalTestKey, d); !errors.Is(err, errSensitiveJSON) {
			t.Fatalf("%v: got %v, want the sensitive-value error", d, err)
		}
	}
}

// detailsGenerator builds details from fuzz input, a byte at a time.
type detailsGenerator struct{ data []byte }

func (g *detailsGenerator) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

func (g *detailsGenerator) uint64() uint64 {
	var b [8]byte
	n := copy(b[:], g.data)
	g.data = g.data[n:]
	return binary.LittleEndian.Uint64(b[:])
}

func (g *detailsGenerator) string() string {
	n := int(g.byte() % 24)
	n = min(n, len(g.data))
	s := string(g.data[:n])
	g.data = g.data[n:]
	return s
}

func (g *detailsGenerator) object(depth int) map[string]any {
	m := map[string]any{}
	for n := g.byte() % 6; n > 0 && len(g.data) > 0; n-- {
		m[g.string()] = g.value(depth + 1)
	}
	return m
}

func (g *detailsGenerator) value(depth int) any {
	if depth > maxDetailsDepth+3 {
		return nil
	}
	switch g.byte() % 24 {
	case 0:
		return nil
	case 1:
		return g.string()
	case 2:
		return g.byte()&1 == 1
	case 3:
		return int(g.uint64())
	case 4:
		return int8(g.byte())
	case 5:
		return g.uint64()
	case 6:
		return math.Float64frombits(g.uint64())
	case 7:
		return math.Float32frombits(uint32(g.uint64()))
	case 8:
		return json.Number(g.string())
	case 9:
		return Sensitive(g.string())
	case 10:
		return &SensitiveValue{g.string()}
	case 11:
		return g.object(depth)
	case 12:
		var l []any
		for n := g.byte() % 5; n > 0 && len(g.data) > 0; n-- {
			l = append(l, g.value(depth+1))
		}
		return l
	case 13:
		return map[string]any(nil)
	case 14:
		return []any(nil)
	case 15:
		m := map[string]string{}
		for n := g.byte() % 4; n > 0; n-- {
			m[g.string()] = g.string()
		}
		return m
	case 16:
		m := map[string]int{}
		for n := g.byte() % 4; n > 0; n-- {
			m[g.string()] = int(g.uint64())
		}
		return m
	case 17:
		var l []string
		for n := g.byte() % 4; n > 0; n-- {
			l = append(l, g.string())
		}
		return l
	case 18:
		var l []map[string]any
		for n := g.byte() % 3; n > 0 && len(g.data) > 0; n-- {
			l = append(l, g.object(depth+1))
		}
		return l
	case 19:
		return detailsStruct{Z: g.string(), A: g.value(depth + 1)}
	case 20:
		return json.RawMessage(g.string())
	case 21:
		return namedString(g.string())
	case 22:
		return float64(int64(g.uint64())) / 1000
	default:
		return int64(g.uint64()) >> (g.byte() % 64)
	}
}

// FuzzCanonicalDetails checks the direct encoder against the encoding/json
// round trip that defines the canonical form, on generated details.
func FuzzCanonicalDetails(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x05\x01a\x01\x03bcd\x01b\x0b\x02\x01c\x09\x02xy"))
	f.Add([]byte("\x04\x02\xffa\x03\x02\xfea\x06\x00\x00\x00\x00\x00\x00\xf8\x7f"))
	f.Add([]byte("\x03\x01k\x12\x02\x02\x01v\x09\x01s\x01w\x0d\x01z\x13\x01q\x0b"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &detailsGenerator{data: data}
		checkSameAsRoundTrip(t, g.object(0))
	})
}

// BenchmarkCanonicalDetails encodes details shaped like an AI call's.
func BenchmarkCanonicalDetails(b *testing.B) {
	details := map[string]any{
		"requestId": "req_01JD7X3Y2Z", "environment": "prod",
		"usage":      map[string]int{"promptTokens": 512, "completionTokens": 128},
		"costMicros": int64(1234), "latencyUs": int64(150000), "overheadUs": int64(90),
		"alias": "chat", "connector": "openai", "vendor": "openai", "model": "gpt-4o-mini", "project": "default",
		"keyName": "ci", "inputSha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"findings":       map[string]int{"pii.email": 1, "pii.phone": 1, "pii.card": 1},
		"decisions":      map[string]int{"tokenize": 3},
		"injectionScore": 0.02,
		"attempts":       []map[string]any{{"target": "openai", "durationUs": int64(150000)}},
		"subjects":       []any{Sensitive("ana@example.com"), Sensitive("+33 6 12 34 56 78"), Sensitive("4111 1111 1111 1111")},
	}
	for _, tc := range []struct {
		name   string
		encode func([]byte, map[string]any) ([]byte, error)
	}{{"direct", canonicalDetails}, {"round-trip", canonicalDetailsViaJSON}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.encode(canonicalTestKey, details); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Pooled encoders keep their keyed HMAC between records: a record under
// another key gets that key's HMAC, however the uses interleave.
func TestCanonicalDetailsHMACFollowsTheKey(t *testing.T) {
	keys := [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}
	for i := range 50 {
		key := keys[i%2]
		got, err := canonicalDetails(key, map[string]any{"v": Sensitive("ana@example.com")})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"v":"` + hmacValue(key, "ana@example.com") + `"}`; string(got) != want {
			t.Fatalf("use %d: %s, want %s", i, got, want)
		}
	}
}

// The encoder reuses the sorted keys of a details object of the same keys;
// one of as many other keys must be sorted afresh.
func TestCanonicalDetailsSameSizeOtherKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		details map[string]any
		want    string
	}{
		{map[string]any{"b": 1, "a": 2, "c": 3}, `{"a":2,"b":1,"c":3}`},
		{map[string]any{"b": 1, "a": 2, "0": 3}, `{"0":3,"a":2,"b":1}`},
		{map[string]any{"b": 1, "a": 2, "c": 3}, `{"a":2,"b":1,"c":3}`},
		{map[string]any{"z": map[string]any{"y": 1, "x": 2}, "a": 2, "c": 3}, `{"a":2,"c":3,"z":{"x":2,"y":1}}`},
	} {
		got, err := canonicalDetails([]byte("k"), tc.details)
		if err != nil || string(got) != tc.want {
			t.Errorf("%v: got %s, %v; want %s", tc.details, got, err, tc.want)
		}
	}
}
