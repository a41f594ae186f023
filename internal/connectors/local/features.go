package local

import (
	"math"
	"unicode"
)

// Feature kinds, mixed into the hash so that a word, a bigram and a
// character n-gram with the same bytes land in different buckets.
const (
	kindWord   = 0x57 // 'W'
	kindBigram = 0x42 // 'B'
	kindChar   = 0x43 // 'C'
)

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// feature is one coordinate of a sparse, L2-normalised vector.
type feature struct {
	index uint32
	value float64
}

// extractor turns a text into hashed features: lower-cased word unigrams
// and bigrams, and character 3- to 5-grams inside each word padded with a
// boundary mark on both sides (so "refund" gives " re", "ref", …, "nd ").
// Term frequencies are scaled sublinearly (1 + ln tf) and the vector is
// L2-normalised. It keeps its buffers between calls, so it is not safe for
// concurrent use; Classifier keeps a pool of them.
type extractor struct {
	mask   uint32
	word   []rune
	hashes []uint32
	keys   []uint32 // counting table: bucket+1, 0 when empty
	counts []int32
	slots  []uint32 // used slots of the table, in first-seen order
	vec    []feature
}

func newExtractor(bits int) *extractor {
	return &extractor{mask: uint32(1)<<bits - 1}
}

// fnvRune feeds one rune to an FNV-1a hash, as its UTF-8 bytes would be.
func fnvRune(h uint64, r rune) uint64 {
	var buf [4]byte
	n := encodeRune(&buf, r)
	for i := 0; i < n; i++ {
		h ^= uint64(buf[i])
		h *= fnvPrime
	}
	return h
}

// encodeRune is utf8.EncodeRune on a fixed array, without the bounds checks
// of a slice.
func encodeRune(p *[4]byte, r rune) int {
	switch {
	case r < 0x80:
		p[0] = byte(r)
		return 1
	case r < 0x800:
		p[0] = 0xC0 | byte(r>>6)
		p[1] = 0x80 | byte(r)&0x3F
		return 2
	case r < 0x10000:
		p[0] = 0xE0 | byte(r>>12)
		p[1] = 0x80 | byte(r>>6)&0x3F
		p[2] = 0x80 | byte(r)&0x3F
		return 3
	default:
		p[0] = 0xF0 | byte(r>>18)
		p[1] = 0x80 | byte(r>>12)&0x3F
		p[2] = 0x80 | byte(r>>6)&0x3F
		p[3] = 0x80 | byte(r)&0x3F
		return 4
	}
}

// bucket mixes a 64-bit hash (the finaliser of SplitMix64) and folds it
// into the feature space.
func (e *extractor) bucket(h uint64) uint32 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return uint32(h) & e.mask
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// features returns the sparse vector of text, each index once, in the
// order the features first occur; dst is reused when it has room.
func (e *extractor) features(text string, dst []feature) []feature {
	e.hashes = e.hashes[:0]
	var prev uint64 // hash of the previous word, 0 at the start
	havePrev := false
	flush := func() {
		if len(e.word) == 0 {
			return
		}
		w := fnvOffset ^ uint64(kindWord)
		for _, r := range e.word {
			w = fnvRune(w, r)
		}
		e.hashes = append(e.hashes, e.bucket(w))
		if havePrev {
			b := (fnvOffset ^ uint64(kindBigram)) ^ prev
			b *= fnvPrime
			b ^= w
			b *= fnvPrime
			e.hashes = append(e.hashes, e.bucket(b))
		}
		prev, havePrev = w, true
		// Character n-grams of " word ", n = 3..5.
		n := len(e.word) + 2
		at := func(i int) rune {
			if i == 0 || i == n-1 {
				return ' '
			}
			return e.word[i-1]
		}
		for i := 0; i+3 <= n; i++ {
			h := fnvOffset ^ uint64(kindChar)
			for j := 0; j < 5 && i+j < n; j++ {
				h = fnvRune(h, at(i+j))
				if j >= 2 {
					e.hashes = append(e.hashes, e.bucket(h))
				}
			}
		}
		e.word = e.word[:0]
	}
	for _, r := range text {
		if isWordRune(r) {
			e.word = append(e.word, unicode.ToLower(r))
			continue
		}
		flush()
	}
	flush()

	// Count the buckets in a small open-addressing table: cheaper than
	// sorting, and the first-seen order it yields is as deterministic.
	size := 16
	for size < 2*len(e.hashes) {
		size *= 2
	}
	if cap(e.keys) < size {
		e.keys = make([]uint32, size)
		e.counts = make([]int32, size)
	}
	keys, counts := e.keys[:size], e.counts[:size]
	clear(keys)
	e.slots = e.slots[:0]
	tmask := uint32(size - 1)
	for _, h := range e.hashes {
		k := h + 1 // 0 marks an empty slot
		i := (h * 0x9e3779b1) & tmask
		for keys[i] != 0 && keys[i] != k {
			i = (i + 1) & tmask
		}
		if keys[i] == 0 {
			keys[i], counts[i] = k, 0
			e.slots = append(e.slots, i)
		}
		counts[i]++
	}
	dst = dst[:0]
	var norm float64
	for _, i := range e.slots {
		v := 1 + math.Log(float64(counts[i]))
		dst = append(dst, feature{index: keys[i] - 1, value: v})
		norm += v * v
	}
	if norm > 0 {
		inv := 1 / math.Sqrt(norm)
		for i := range dst {
			dst[i].value *= inv
		}
	}
	return dst
}
