package detect

import (
	"reflect"
	"testing"
	"unicode/utf8"
)

func TestResolveOverlapsAndCodePoints(t *testing.T) {
	t.Parallel()
	text := "é€ abc defg"
	// "abc" starts at byte 6 (é is 2 bytes, € is 3, then a space).
	spans := []span{
		{Type: "low", Start: 6, End: 9, Score: 0.6},
		{Type: "high", Start: 7, End: 14, Score: 0.9},
		{Type: "apart", Start: 0, End: 2, Score: 0.7},
	}
	got := toFindings(text, resolveOverlaps(nil, spans))
	want := []Finding{
		{Type: "apart", Start: 0, End: 1, Score: 0.7},
		{Type: "high", Start: 4, End: 11, Score: 0.9},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func FuzzRuneCount(f *testing.F) {
	for _, s := range []string{"", "a", "abcdefgh", "abcdefghé", "é", "\xe2\x82", "\x80abcdefghij\xff", "日本語のテキスト and ASCII after it", "ab\xf0\x9f\x98"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := runeCount(s), utf8.RuneCountInString(s); got != want {
			t.Fatalf("runeCount(%q) = %d, want %d", s, got, want)
		}
	})
}

// FuzzFindingsFromSpans checks the two ways toFindings converts offsets
// (ascending spans without sorting, any others sorted) against counting
// the code points before each offset, and resolveOverlaps writing its
// result over its input against writing it elsewhere. Each 3 bytes of
// raw make a span: start, length, score.
func FuzzFindingsFromSpans(f *testing.F) {
	f.Add("é€ abc defg 日本", []byte{6, 3, 60, 7, 7, 90, 0, 2, 70})
	f.Add("plain ascii text here", []byte{0, 5, 90, 6, 5, 80, 12, 4, 70})
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, text string, raw []byte) {
		if len(text) == 0 {
			return
		}
		var spans []span
		for i := 0; i+2 < len(raw) && len(spans) < 64; i += 3 {
			// Detectors' offsets fall on rune boundaries.
			start := runeStartAtOrBefore(text, int(raw[i])%len(text))
			end := min(start+1+int(raw[i+1])%16, len(text))
			if end < len(text) {
				end = runeStartAtOrBefore(text, end)
			}
			if end <= start {
				continue
			}
			spans = append(spans, span{Type: "t", Start: start, End: end, Score: float64(raw[i+2]) / 255})
		}
		want := func(spans []span) []Finding {
			out := make([]Finding, len(spans))
			for i, s := range spans {
				out[i] = Finding{Type: s.Type, Start: utf8.RuneCountInString(text[:s.Start]), End: utf8.RuneCountInString(text[:s.End]), Score: s.Score}
			}
			return out
		}
		if got, want := toFindings(text, spans), want(spans); !reflect.DeepEqual(got, want) {
			t.Fatalf("toFindings of %+v\n got %+v\nwant %+v", spans, got, want)
		}
		apart := resolveOverlaps(nil, append([]span(nil), spans...))
		inPlace := resolveOverlaps(spans[:0], spans)
		if !reflect.DeepEqual(inPlace, apart) {
			t.Fatalf("resolveOverlaps in place\n got %+v\nwant %+v", inPlace, apart)
		}
		if got, want := toFindings(text, inPlace), want(apart); !reflect.DeepEqual(got, want) {
			t.Fatalf("toFindings of resolved %+v\n got %+v\nwant %+v", apart, got, want)
		}
	})
}

func runeStartAtOrBefore(text string, i int) int {
	for i > 0 && !utf8.RuneStart(text[i]) {
		i--
	}
	return i
}
