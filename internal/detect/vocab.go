package detect

import "strconv"

// vocabTable is an open-addressing hash set of the vocabulary (the phrase
// words and the data-mode lexicon), each word with an id. Tokenising looks
// up every word of the text, so a word is packed into a 16-byte vocabKey:
// comparing it with a slot is two integer comparisons in the slot itself,
// not a call to compare with string bytes stored elsewhere, and the table
// is half full rather than a quarter. For 1,786 words that is 64 KB of keys
// and 8 KB of ids, where string keys took 128 KB of headers, 32 KB of ids
// and the words' bytes elsewhere.
type vocabTable struct {
	keys  []vocabKey // the zero key marks an empty slot
	ids   []uint16
	shift uint8 // 64 - log2(len(keys))
	// lens, by first byte: bit l set when a word of length l starts with
	// it. Most words of a text that are not in the vocabulary are turned
	// down by it without hashing.
	lens [256]uint64
}

// maxVocabWord is the longest word a vocabKey holds.
const maxVocabWord = 15

// vocabKey is a word of up to maxVocabWord bytes: its bytes in order,
// little-endian, zero-padded, and its length in the top byte of hi.
// Distinct words give distinct keys whatever bytes they hold, and no word
// gives the zero key, which marks an empty slot.
type vocabKey struct{ lo, hi uint64 }

// packWord packs w, which must be at most maxVocabWord bytes long.
func packWord(w string) vocabKey {
	var k vocabKey
	for i := 0; i < len(w) && i < 8; i++ {
		k.lo |= uint64(w[i]) << (8 * i)
	}
	for i := 8; i < len(w); i++ {
		k.hi |= uint64(w[i]) << (8 * (i - 8))
	}
	k.hi |= uint64(len(w)) << 56
	return k
}

// packWordAt packs s[i:j] as packWord does, with two 8-byte loads when s
// holds 16 bytes from i; j-i must be at most maxVocabWord.
func packWordAt(s string, i, j int) vocabKey {
	if len(s)-i < 16 {
		return packWord(s[i:j])
	}
	n := uint(j - i)
	m := &wordMasks[n&15] // n <= maxVocabWord < 16
	return vocabKey{le64(s[i:]) & m.lo, le64(s[i+8:])&m.hi | uint64(n)<<56}
}

// wordMasks[n] keeps the bytes of a word of n bytes in its two loads.
var wordMasks = func() (t [16]vocabKey) {
	for n := range t {
		for b := range n {
			if b < 8 {
				t[n].lo |= 0xFF << (8 * b)
			} else {
				t[n].hi |= 0xFF << (8 * (b - 8))
			}
		}
	}
	return t
}()

// le64 reads the first 8 bytes of s as a little-endian integer; the
// compiler makes it one load.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// slot is where the search for k starts: the top bits of a multiplicative
// hash, which depend on every bit of the key.
func (v *vocabTable) slot(k vocabKey) uint64 {
	return ((k.lo ^ k.hi) * 0x9E3779B97F4A7C15) >> v.shift
}

// lookup returns w's id, or -1.
func (v *vocabTable) lookup(w string) int32 {
	return v.lookupAt(w, 0, len(w))
}

// lookupAt returns the id of the word s[i:j], or -1.
func (v *vocabTable) lookupAt(s string, i, j int) int32 {
	if i >= j || v.lens[s[i]]&(1<<min(j-i, 63)) == 0 {
		return -1
	}
	// lens has no bit above maxVocabWord, so the word fits a key.
	k := packWordAt(s, i, j)
	mask := uint64(len(v.keys) - 1)
	for h := v.slot(k); ; h = (h + 1) & mask {
		e := v.keys[h]
		if e == k {
			return int32(v.ids[h])
		}
		if e.hi == 0 { // an empty slot: every key has a length in hi
			return -1
		}
	}
}

// newVocabTable builds the table of words, which must be distinct,
// non-empty and at most maxVocabWord bytes long; a word's id is its index.
func newVocabTable(words []string) vocabTable {
	if len(words) >= 1<<16 {
		panic("detect: vocabulary of " + strconv.Itoa(len(words)) + " words does not fit uint16 ids")
	}
	// At most half full, so that a search seldom reads past its first slot.
	logSize := 1
	for 1<<logSize < 2*len(words) {
		logSize++
	}
	v := vocabTable{keys: make([]vocabKey, 1<<logSize), ids: make([]uint16, 1<<logSize), shift: uint8(64 - logSize)}
	mask := uint64(len(v.keys) - 1)
	for id, w := range words {
		if w == "" || len(w) > maxVocabWord {
			panic("detect: vocabulary word of " + strconv.Itoa(len(w)) + " bytes: " + w)
		}
		k := packWord(w)
		h := v.slot(k)
		for v.keys[h] != (vocabKey{}) {
			if v.keys[h] == k {
				panic("detect: vocabulary word given twice: " + w)
			}
			h = (h + 1) & mask
		}
		v.keys[h], v.ids[h] = k, uint16(id)
		v.lens[w[0]] |= 1 << len(w)
	}
	return v
}
