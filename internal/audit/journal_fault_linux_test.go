package audit

import (
	"encoding/binary"
	"os"
	"testing"
	"time"
	"unsafe"
)

// TestJournalFaultsAheadOfAppends: while records come, the writer keeps
// the journal's mapping grown and its pages faulted in (present in the
// process's page table) for writeAhead bytes past the last record, so that
// appenders copy into pages that need no fault; the records stay readable
// and the log reopens whole.
func TestJournalFaultsAheadOfAppends(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	jpath := journalPath(t)
	l := openLog(t, s, signer, hkey, Options{Journal: jpath})
	page := int64(os.Getpagesize())
	n := 0
	// Three rounds, each appending past what the writer had faulted in.
	for round, mark := 0, int64(0); round < 3; round++ {
		for size, _, _ := journalState(l); size <= mark; size, _, _ = journalState(l) {
			if _, err := l.Append(t.Context(), testRecord(n)); err != nil {
				t.Fatal(err)
			}
			n++
		}
		size, faulted, mem := journalState(l)
		for deadline := time.Now().Add(10 * time.Second); faulted < size+writeAhead; size, faulted, mem = journalState(l) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: after 10 s the writer has faulted in the journal up to %d, want %d (%d bytes of frames, a mapping of %d)", round, faulted, size+writeAhead, size, len(mem))
			}
			time.Sleep(5 * time.Millisecond)
		}
		l.mu.Lock()
		for off := size / page * page; off < size+writeAhead; off += page {
			if !pagePresent(t, unsafe.Pointer(&l.journal.mem[off])) {
				l.mu.Unlock()
				t.Fatalf("round %d: the page at byte %d of the journal (its frames end at %d) is not faulted in", round, off, size)
			}
		}
		l.mu.Unlock()
		mark = faulted
	}
	if first, end, err := JournalRange(jpath); err != nil || first != 0 || end != int64(n) {
		t.Fatalf("a reader of the file sees records %d..%d (%v), want 0..%d", first, end-1, err, n-1)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyStore(t, s, verifier); rep.Records != int64(n) {
		t.Fatalf("the database holds %d records, want %d", rep.Records, n)
	}
}

// pagePresent reads the page table entry of the page holding addr from
// /proc/self/pagemap: bit 63 says the page is present.
func pagePresent(t *testing.T, addr unsafe.Pointer) bool {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skipf("cannot read the page table here: %v", err)
	}
	defer f.Close()
	var entry [8]byte
	if _, err := f.ReadAt(entry[:], int64(uintptr(addr))/int64(os.Getpagesize())*8); err != nil {
		t.Skipf("cannot read the page table here: %v", err)
	}
	return binary.LittleEndian.Uint64(entry[:])>>63 == 1
}
