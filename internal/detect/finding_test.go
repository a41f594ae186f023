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
