package gateway

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/detect"
)

// findingTextsByTable is the straightforward findingTexts: a table of the
// byte offset of every code point. findingTexts must agree with it.
func findingTextsByTable(text string, fs []detect.Finding) []string {
	out := make([]string, len(fs))
	offs := make([]int, 0, utf8.RuneCountInString(text)+1)
	for i := range text {
		offs = append(offs, i)
	}
	offs = append(offs, len(text))
	for i, f := range fs {
		if f.Start < 0 || f.End < f.Start || f.End >= len(offs) {
			continue
		}
		out[i] = text[offs[f.Start]:offs[f.End]]
	}
	return out
}

// randomFindings makes spans over text, in any order, overlapping, empty,
// negative or past the end, as well as those detect.Scan finds.
func randomFindings(r *rand.Rand, text string) []detect.Finding {
	n := utf8.RuneCountInString(text)
	fs := detect.Scan(text)
	for range r.IntN(40) {
		start := r.IntN(n+4) - 2
		end := start + r.IntN(n+4) - 1
		fs = append(fs, detect.Finding{Type: "pii.x", Start: start, End: end})
	}
	r.Shuffle(len(fs), func(i, j int) { fs[i], fs[j] = fs[j], fs[i] })
	return fs
}

func TestFindingTextsAgreesWithTable(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "é", "😀", "\xff", "\xe2\x82", " ", "jane@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "\u2028", "€"}
	for range 5000 {
		var text string
		for range r.IntN(30) {
			text += pieces[r.IntN(len(pieces))]
		}
		fs := randomFindings(r, text)
		if got, want := findingTexts(text, fs), findingTextsByTable(text, fs); !slices.Equal(got, want) {
			t.Fatalf("findingTexts(%q, %v) = %q, want %q", text, fs, got, want)
		}
	}
}

func FuzzFindingTexts(f *testing.F) {
	f.Add("Mail jane@example.com or call +44 20 7946 0958.", uint64(1))
	f.Add("é😀\xff\xe2\x82 4111 1111 1111 1111", uint64(2))
	f.Add("", uint64(3))
	f.Fuzz(func(t *testing.T, text string, seed uint64) {
		fs := randomFindings(rand.New(rand.NewPCG(seed, seed>>1)), text)
		if got, want := findingTexts(text, fs), findingTextsByTable(text, fs); !slices.Equal(got, want) {
			t.Fatalf("findingTexts(%q, %v) = %q, want %q", text, fs, got, want)
		}
	})
}
