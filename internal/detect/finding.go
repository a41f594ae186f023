// Package detect finds personal data, secrets and prompt-injection attempts
// in text: pure functions, no I/O, no dependencies on the rest of Moat.
//
// Detectors look only where something can be: one pass over the text finds
// cheap anchors (an '@', a run of digits, a known key prefix …) and only
// then runs the exact pattern, the validator (checksums, ranges) and the
// context check on a small window around each. A candidate that fails its
// validator is not a finding.
package detect

import (
	"cmp"
	"slices"
	"sync"
	"unicode/utf8"
)

// MinScore is the score below which Scan drops a candidate.
const MinScore = 0.5

// Finding is something a detector saw. Start and End are offsets in
// Unicode code points, End exclusive.
type Finding struct {
	Type    string   `json:"type"`
	Start   int      `json:"start"`
	End     int      `json:"end"`
	Score   float64  `json:"score"`
	Reasons []string `json:"reasons,omitempty"`
}

// span is a candidate as scanners report it: byte offsets into the text.
type span struct {
	Type       string
	Start, End int
	Score      float64
	Reasons    []string
}

// scanner reports the candidates of one family of types.
type scanner func(text string, emit func(span))

// scanners are the families Scan runs, registered by each family's file.
var scanners []scanner

func register(s scanner) { scanners = append(scanners, s) }

// Scan returns the PII and secret findings in text, sorted by start and not
// overlapping: where candidates overlap, the higher score wins, then the
// longer span.
func Scan(text string) []Finding {
	sc := scanScratches.Get().(*scanScratch)
	sc.text = text
	for _, scan := range scanners {
		scan(text, sc.emit)
	}
	out := toFindings(text, resolveOverlaps(sc.spans[:0], sc.spans))
	if cap(sc.spans) <= maxPooledSpans {
		// The spans' reasons are the findings' now: the scratch lets go of
		// them and of the text before it goes back.
		clear(sc.spans)
		sc.text = ""
		sc.spans = sc.spans[:0]
		scanScratches.Put(sc)
	}
	return out
}

// scanScratch holds Scan's candidate list, reused across calls; emit is
// bound to it once, as a closure made per call would be allocated per call.
type scanScratch struct {
	text  string
	spans []span
	emit  func(span)
}

var scanScratches = sync.Pool{New: func() any {
	sc := &scanScratch{}
	sc.emit = func(s span) {
		if s.Score >= MinScore && s.Start < s.End && s.End <= len(sc.text) {
			sc.spans = append(sc.spans, s)
		}
	}
	return sc
}}

// maxPooledSpans bounds the candidate list kept for reuse.
const maxPooledSpans = 1024

// resolveOverlaps keeps, among overlapping spans, the best one: spans are
// taken by score (then length, then start) and kept unless they overlap one
// already kept. Only spans of one cluster (a run of spans linked by
// overlaps) can affect each other, so the choice is made per cluster, and
// the usual cluster of one span costs nothing.
//
// The spans kept are appended to dst, which may be spans[:0]: no span is
// written before it has been read. spans is reordered.
func resolveOverlaps(dst, spans []span) []span {
	if len(spans) < 2 {
		return append(dst, spans...)
	}
	slices.SortStableFunc(spans, func(a, b span) int {
		if c := cmp.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.End, b.End)
	})
	better := func(a, b span) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		if c := cmp.Compare(b.End-b.Start, a.End-a.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.Start, b.Start)
	}
	kept := dst
	var cluster []span
	for i := 0; i < len(spans); {
		j, end := i+1, spans[i].End
		for j < len(spans) && spans[j].Start < end {
			end = max(end, spans[j].End)
			j++
		}
		if j == i+1 {
			kept = append(kept, spans[i])
			i = j
			continue
		}
		cluster = append(cluster[:0], spans[i:j]...)
		slices.SortStableFunc(cluster, better)
		first := len(kept)
		for _, s := range cluster {
			overlaps := false
			for _, k := range kept[first:] {
				if s.Start < k.End && k.Start < s.End {
					overlaps = true
					break
				}
			}
			if !overlaps {
				kept = append(kept, s)
			}
		}
		slices.SortFunc(kept[first:], func(a, b span) int { return cmp.Compare(a.Start, b.Start) })
		i = j
	}
	return kept
}

// toFindings converts byte offsets to code points in one pass over the text.
func toFindings(text string, spans []span) []Finding {
	out := make([]Finding, len(spans))
	if ordered(spans) {
		// Scan's spans, which overlap none: their offsets ascend as they
		// come, and need no sorting.
		bytePos, runes := 0, 0
		advance := func(offset int) int {
			runes += runeCount(text[bytePos:offset])
			bytePos = offset
			return runes
		}
		for i, s := range spans {
			out[i] = Finding{Type: s.Type, Start: advance(s.Start), End: advance(s.End), Score: s.Score, Reasons: s.Reasons}
		}
		return out
	}
	// Offsets to convert, in ascending order, with where each goes.
	type ref struct {
		offset int
		dst    *int
	}
	var refsBuf [16]ref // the usual text's findings, without an allocation
	refs := refsBuf[:0]
	for i, s := range spans {
		out[i] = Finding{Type: s.Type, Score: s.Score, Reasons: s.Reasons}
		refs = append(refs, ref{s.Start, &out[i].Start}, ref{s.End, &out[i].End})
	}
	slices.SortFunc(refs, func(a, b ref) int { return cmp.Compare(a.offset, b.offset) })
	bytePos, runes := 0, 0
	for _, r := range refs {
		if r.offset > bytePos {
			runes += runeCount(text[bytePos:r.offset])
			bytePos = r.offset
		}
		*r.dst = runes
	}
	return out
}

// ordered reports whether each span ends no later than the next starts.
func ordered(spans []span) bool {
	end := 0
	for _, s := range spans {
		if s.Start < end || s.End < s.Start {
			return false
		}
		end = s.End
	}
	return true
}

// runeCount is utf8.RuneCountInString, eight bytes at a time where text is
// ASCII, as prose mostly is. A rune never starts inside an ASCII byte, so
// decoding the rest from where a stretch of ASCII ends counts as ranging
// over all of s does, invalid bytes included.
func runeCount(s string) int {
	n := 0
	for len(s) > 0 {
		for len(s) >= 8 && le64(s)&highBits == 0 {
			n += 8
			s = s[8:]
		}
		if len(s) == 0 {
			break
		}
		size := 1
		if s[0] >= utf8.RuneSelf {
			_, size = utf8.DecodeRuneInString(s)
		}
		n++
		s = s[size:]
	}
	return n
}
