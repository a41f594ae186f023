package audit

import (
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// frontier is the right edge of a Merkle tree: the roots of the perfect
// subtrees that make up the tree of its size, largest (leftmost) first.
// It is all the writer and the verifier keep in memory: O(log n) hashes.
//
// Adding a leaf yields exactly the hashes tlog.StoredHashes returns for
// that record, and root equals tlog.TreeHash (tests check both).
type frontier struct {
	size  int64
	nodes []tlog.Hash // one per set bit of size, highest bit first
}

// push adds leaf as record f.size and appends the hashes the record
// completes (its stored hashes, leaf first) to stored.
func (f *frontier) push(leaf tlog.Hash, stored []tlog.Hash) []tlog.Hash {
	stored = append(stored, leaf)
	h := leaf
	// Each trailing one bit of size is a perfect subtree of the same
	// height as h, waiting for its right sibling.
	for n := f.size; n&1 == 1; n >>= 1 {
		last := len(f.nodes) - 1
		h = tlog.NodeHash(f.nodes[last], h)
		f.nodes = f.nodes[:last]
		stored = append(stored, h)
	}
	f.nodes = append(f.nodes, h)
	f.size++
	return stored
}

// root is the tree hash of the first f.size records.
func (f *frontier) root() tlog.Hash {
	if len(f.nodes) == 0 {
		return tlog.Hash{}
	}
	h := f.nodes[len(f.nodes)-1]
	for i := len(f.nodes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.nodes[i], h)
	}
	return h
}

func (f *frontier) clone() frontier { return f.cloneInto(nil) }

// cloneInto copies f into the storage of nodes, which must not be f's.
func (f *frontier) cloneInto(nodes []tlog.Hash) frontier {
	return frontier{size: f.size, nodes: append(nodes[:0], f.nodes...)}
}

// frontierIndexes lists the storage indexes (tlog.StoredHashIndex) of the
// frontier of a tree of size n, largest subtree first.
func frontierIndexes(n int64) []int64 {
	var out []int64
	var covered int64
	for level := 63; level >= 0; level-- {
		if n&(1<<level) == 0 {
			continue
		}
		covered += 1 << level
		out = append(out, tlog.StoredHashIndex(level, covered>>level-1))
	}
	return out
}

// hashOwner tells which record's stored hashes hold storage index i, and
// where among them: node (level, k) is completed by the last record it
// covers and is the level-th hash that record stores.
func hashOwner(i int64) (seq int64, pos int) {
	level, k := tlog.SplitStoredHashIndex(i)
	return (k+1)<<level - 1, level
}

// storedCount is how many hashes record seq stores: one plus the number of
// subtrees it completes.
func storedCount(seq int64) int { return 1 + bits.TrailingZeros64(^uint64(seq)) }

// splitHashes cuts a record's stored hashes into 32-byte hashes.
func splitHashes(seq int64, b []byte) ([]tlog.Hash, error) {
	if len(b) != storedCount(seq)*tlog.HashSize {
		return nil, fmt.Errorf("record %d stores %d bytes of hashes, want %d", seq, len(b), storedCount(seq)*tlog.HashSize)
	}
	out := make([]tlog.Hash, len(b)/tlog.HashSize)
	for i := range out {
		copy(out[i][:], b[i*tlog.HashSize:])
	}
	return out, nil
}
