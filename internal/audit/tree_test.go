package audit

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestFrontierMatchesTlog checks the writer's and verifier's O(log n)
// tree against tlog's reference functions on every size up to 300.
func TestFrontierMatchesTlog(t *testing.T) {
	t.Parallel()
	var all []tlog.Hash // every stored hash, by storage index
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = all[x]
		}
		return out, nil
	})
	var f frontier
	for n := int64(0); n < 300; n++ {
		data := []byte(fmt.Sprintf("record %d", n))
		want, err := tlog.StoredHashes(n, data, reader)
		if err != nil {
			t.Fatal(err)
		}
		got := f.push(tlog.RecordHash(data), nil)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("record %d: stored hashes %v, want %v", n, got, want)
		}
		if len(got) != storedCount(n) {
			t.Fatalf("record %d: storedCount %d, want %d", n, storedCount(n), len(got))
		}
		if tlog.StoredHashIndex(0, n) != int64(len(all)) {
			t.Fatalf("record %d: storage index drifted", n)
		}
		all = append(all, want...)
		root, err := tlog.TreeHash(n+1, reader)
		if err != nil {
			t.Fatal(err)
		}
		if f.root() != root {
			t.Fatalf("size %d: root %v, want %v", n+1, f.root(), root)
		}
		for i, idx := range frontierIndexes(n + 1) {
			if all[idx] != f.nodes[i] {
				t.Fatalf("size %d: frontier index %d does not hold frontier node %d", n+1, idx, i)
			}
			seq, pos := hashOwner(idx)
			if got := all[tlog.StoredHashIndex(0, seq)+int64(pos)]; got != all[idx] {
				t.Fatalf("size %d: hashOwner(%d) = %d,%d points elsewhere", n+1, idx, seq, pos)
			}
		}
	}
}

func TestSplitHashes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		seq  int64
		n    int
		fail bool
	}{
		{0, 32, false}, {1, 64, false}, {3, 96, false}, {2, 32, false},
		{1, 32, true}, {0, 0, true}, {7, 31, true},
	}
	for _, tc := range tests {
		_, err := splitHashes(tc.seq, make([]byte, tc.n))
		if (err != nil) != tc.fail {
			t.Errorf("splitHashes(%d, %d bytes): error %v, want failure %v", tc.seq, tc.n, err, tc.fail)
		}
	}
}
