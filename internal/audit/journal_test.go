package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

func journalPath(t *testing.T) string { return filepath.Join(t.TempDir(), JournalFile) }

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

func TestJournalAppendFlushReopen(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	jpath := journalPath(t)
	l := openLog(t, s, signer, hkey, Options{Journal: jpath, CheckpointEvery: 100})
	for i := range 250 {
		seqs, err := l.Append(t.Context(), testRecord(i))
		if err != nil || seqs[0] != int64(i) {
			t.Fatalf("append %d: %v %v", i, seqs, err)
		}
	}
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.AuditSize(t.Context()); n != 250 || l.Size() != 250 {
		t.Fatalf("after Flush the database holds %d records (Size %d), want 250", n, l.Size())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyStore(t, s, verifier); rep.Records != 250 || rep.Covered != 250 {
		t.Fatalf("report %+v: want 250 records, all under a checkpoint", rep)
	}
	if n := fileSize(t, jpath); n != 0 {
		t.Errorf("a closed log leaves %d bytes in its journal", n)
	}
	// The same log goes on, with or without a journal.
	l2 := openLog(t, s, signer, hkey, Options{Journal: jpath})
	if seqs, err := l2.Append(t.Context(), testRecord(250)); err != nil || seqs[0] != 250 {
		t.Fatalf("append after reopen: %v %v", seqs, err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyStore(t, s, verifier); rep.Records != 251 || rep.Covered != 251 {
		t.Fatalf("after reopen: %+v", rep)
	}
}

// switchableStore fails or holds back audit writes on demand: a database
// that is down, locked or full.
type switchableStore struct {
	store.Store
	fail atomic.Bool
	hold chan struct{} // when not nil, writes wait for it to close
	mu   sync.Mutex
}

var errDatabaseDown = errors.New("database down")

func (s *switchableStore) gate(ctx context.Context) error {
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.fail.Load() {
		return errDatabaseDown
	}
	return nil
}

func (s *switchableStore) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	if err := s.gate(ctx); err != nil {
		return err
	}
	return s.Store.AppendAudit(ctx, recs)
}

func (s *switchableStore) InTx(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.gate(ctx); err != nil {
		return err
	}
	return s.Store.InTx(ctx, fn)
}

// TestJournalRecoversWhatTheDatabaseMissed stops the database from taking
// records while appends go on, copies the database and the journal as a
// crash would leave them, and opens a log on the copies: it commits the
// journaled records, and the result is the very log the original ends up
// with.
func TestJournalRecoversWhatTheDatabaseMissed(t *testing.T) {
	t.Parallel()
	base, _ := openStore(t)
	s := &switchableStore{Store: base}
	signer, verifier, hkey := testKeys(t)
	jpath := journalPath(t)
	l := openLog(t, s, signer, hkey, Options{Journal: jpath, CheckpointEvery: 50})
	for i := range 70 {
		if _, err := l.Append(t.Context(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.hold = make(chan struct{})
	s.mu.Unlock()
	for i := 70; i < 200; i++ {
		if _, err := l.Append(t.Context(), testRecord(i)); err != nil {
			t.Fatalf("append %d while the database is held: %v", i, err)
		}
	}
	// The crash: what the database and the journal hold now.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	if _, err := base.WriterDB().Exec(`VACUUM INTO ?`, crashed); err != nil {
		t.Fatal(err)
	}
	journal, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	crashedJournal := filepath.Join(t.TempDir(), JournalFile)
	if err := os.WriteFile(crashedJournal, journal, 0o600); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	close(s.hold)
	s.hold = nil
	s.mu.Unlock()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	restarted, err := sqlite.Open(t.Context(), crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if n, _ := restarted.AuditSize(t.Context()); n != 70 {
		t.Fatalf("the crashed database holds %d records, want 70", n)
	}
	l2 := openLog(t, restarted, signer, hkey, Options{Journal: crashedJournal})
	if n, _ := restarted.AuditSize(t.Context()); n != 200 {
		t.Fatalf("after recovery the database holds %d records, want 200", n)
	}
	if n := fileSize(t, crashedJournal); n != 0 {
		t.Errorf("recovery left %d bytes in the journal", n)
	}
	if seqs, err := l2.Append(t.Context(), testRecord(200)); err != nil || seqs[0] != 200 {
		t.Fatalf("append after recovery: %v %v", seqs, err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	rep := verifyStore(t, restarted, verifier)
	if rep.Records != 201 || rep.Covered != 201 {
		t.Fatalf("recovered log: %+v", rep)
	}
	// Records 0..199 are the original's, byte for byte.
	want, err := base.ListAudit(t.Context(), 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	got, err := restarted.ListAudit(t.Context(), 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !bytes.Equal(got[i].Hashes, want[i].Hashes) || !bytes.Equal(got[i].Details, want[i].Details) {
			t.Fatalf("record %d differs after recovery", i)
		}
	}
}

// TestJournalFailsClosedWhileTheDatabaseFails: the records a failing
// database has not taken stay in the journal, appends are refused until it
// takes them, and none is lost.
func TestJournalFailsClosedWhileTheDatabaseFails(t *testing.T) {
	t.Parallel()
	base, _ := openStore(t)
	s := &switchableStore{Store: base}
	signer, verifier, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{Journal: journalPath(t), CheckpointInterval: 20 * time.Millisecond})
	s.fail.Store(true)
	if _, err := l.Append(t.Context(), testRecord(0)); err != nil {
		t.Fatalf("the first append is journaled before the database is tried: %v", err)
	}
	accepted := 1
	for {
		_, err := l.Append(t.Context(), testRecord(accepted))
		if err != nil {
			if !errors.Is(err, errBehind) || !strings.Contains(err.Error(), errDatabaseDown.Error()) {
				t.Fatalf("append while the database fails: %v", err)
			}
			break
		}
		accepted++
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := l.Flush(ctx); !errors.Is(err, errBehind) {
		t.Fatalf("flush while the database fails: %v", err)
	}
	s.fail.Store(false)
	// The writer retries on its tick; appends are taken again after that.
	for {
		_, err := l.Append(t.Context(), testRecord(accepted))
		if err == nil {
			accepted++
			break
		}
		if t.Context().Err() != nil {
			t.Fatal("appends are still refused after the database recovered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyStore(t, base, verifier); rep.Records != int64(accepted) || rep.Covered != int64(accepted) {
		t.Fatalf("%d appends accepted; report %+v", accepted, rep)
	}
}

// TestJournalWriteFailureAcknowledgesNothing: an append whose journal write
// fails is refused and leaves nothing behind.
func TestJournalWriteFailureAcknowledgesNothing(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	jpath := journalPath(t)
	l := openLog(t, s, signer, hkey, Options{Journal: jpath})
	// A mapped journal does not write(2): this is the path of file
	// systems that cannot map it (TestMappedJournal covers the other).
	l.mu.Lock()
	l.journal.writes = true
	l.mu.Unlock()
	if _, err := l.Append(t.Context(), testRecord(0)); err != nil {
		t.Fatal(err)
	}
	readOnly, err := os.Open(jpath)
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	writable := l.journal.f
	l.journal.f = readOnly
	l.mu.Unlock()
	if _, err := l.Append(t.Context(), testRecord(1)); err == nil {
		t.Fatal("an append whose journal write failed succeeded")
	}
	// The failed write could not be cut off either (the file is read-only
	// here), so the journal takes nothing more until a restart.
	l.mu.Lock()
	l.journal.f = writable
	l.mu.Unlock()
	if _, err := l.Append(t.Context(), testRecord(1)); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("append to a journal that may end in a torn frame: %v", err)
	}
	readOnly.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyStore(t, s, verifier); rep.Records != 1 {
		t.Fatalf("report %+v: want only the acknowledged record", rep)
	}
}

func TestJournalAppendsRacingClose(t *testing.T) {
	t.Parallel()
	checkAppendsRacingClose(t, 5, 20, func() Options { return Options{Journal: journalPath(t)} })
}

// journalOf returns a journal holding records from..to-1 of a test log.
func journalOf(t testing.TB, from, to int) []byte {
	t.Helper()
	_, _, hkey := testKeys(t)
	var b []byte
	for i := from; i < to; i++ {
		r, err := prepare(hkey, testRecord(i), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r.Seq = int64(i)
		b = appendJournalFrame(b, &r)
	}
	return b
}

func TestReadJournal(t *testing.T) {
	t.Parallel()
	whole := journalOf(t, 0, 3)
	second := len(journalOf(t, 0, 1))
	damaged := bytes.Clone(whole)
	damaged[second+journalFrameHeader+3] ^= 1
	huge := append(bytes.Clone(whole[:second]), 0x7f, 0, 0, 0, 0, 0, 0, 0)
	// What a crash while copying a frame into a mapped journal leaves: its
	// body, or part of it, after a header still zero, then zeros.
	fourth := journalOf(t, 3, 4)
	headerless := append(make([]byte, journalFrameHeader), fourth[journalFrameHeader:len(fourth)-5]...)
	headerless = append(headerless, make([]byte, 100)...)
	lostHeader := bytes.Clone(whole)
	clear(lostHeader[second : second+journalFrameHeader])
	for _, tc := range []struct {
		name    string
		data    []byte
		records int
		kept    int
		err     string
	}{
		{"empty", nil, 0, 0, ""},
		{"whole", whole, 3, len(whole), ""},
		{"cut in a header", whole[:second+5], 1, second, ""},
		{"cut in a body", whole[:len(whole)-1], 2, len(journalOf(t, 0, 2)), ""},
		{"zeros after the last frame", append(bytes.Clone(whole), make([]byte, 4096)...), 3, len(whole), ""},
		{"a body whose header was never written", append(bytes.Clone(whole), headerless...), 3, len(whole), ""},
		{"a lost header before a whole frame", lostHeader, 0, 0, "no header, yet a whole frame follows at byte"},
		{"a damaged frame", damaged, 0, 0, "checksum"},
		{"an impossible length", huge, 0, 0, "claims"},
		{"a gap", append(journalOf(t, 0, 1), journalOf(t, 2, 3)...), 0, 0, "after record 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, kept, err := readJournal(tc.data)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || len(recs) != tc.records || kept != int64(tc.kept) {
				t.Fatalf("%d records, %d bytes kept, %v; want %d and %d", len(recs), kept, err, tc.records, tc.kept)
			}
		})
	}
}

func TestOpenJournalCutsATornEnd(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	jpath := journalPath(t)
	whole := journalOf(t, 0, 2)
	if err := os.WriteFile(jpath, whole[:len(whole)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, s, signer, hkey, Options{Journal: jpath})
	if l.Size() != 1 {
		t.Fatalf("log of %d records after a torn journal, want 1", l.Size())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	verifyStore(t, s, verifier)
}

func TestOpenJournalRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, want string
		journal    func(t *testing.T) []byte
		want1      error
	}{
		{"a journal that skips records", "goes on from record 5", func(t *testing.T) []byte { return journalOf(t, 5, 7) }, ErrTampered},
		{"a damaged journal", "move it aside", func(t *testing.T) []byte {
			b := journalOf(t, 0, 2)
			b[journalFrameHeader+1] ^= 1
			return b
		}, errJournal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openStore(t)
			signer, _, hkey := testKeys(t)
			jpath := journalPath(t)
			if err := os.WriteFile(jpath, tc.journal(t), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(t.Context(), s, signer, hkey, Options{Journal: jpath})
			if !errors.Is(err, tc.want1) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open: %v; want %v saying %q", err, tc.want1, tc.want)
			}
			if n, _ := s.AuditSize(t.Context()); n != 0 {
				t.Errorf("a refused journal added %d records", n)
			}
		})
	}
}

// FuzzReadJournal: any bytes are read without a panic, and what is read
// back encodes to exactly the bytes kept.
func FuzzReadJournal(f *testing.F) {
	whole := journalOf(f, 0, 3)
	f.Add(whole)
	f.Add(whole[:len(whole)-2])
	f.Add(append(bytes.Clone(whole), 0, 0, 0))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 'x'})
	// A header a crash left zero, before part of a body, and before a
	// whole frame.
	f.Add(append(append(bytes.Clone(whole), make([]byte, journalFrameHeader)...), whole[journalFrameHeader:20]...))
	f.Add(append(make([]byte, journalFrameHeader), whole...))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, kept, err := readJournal(data)
		if err != nil {
			return
		}
		if kept > int64(len(data)) {
			t.Fatalf("kept %d of %d bytes", kept, len(data))
		}
		var again []byte
		for i := range recs {
			again = appendJournalFrame(again, &recs[i])
		}
		if !bytes.Equal(again, data[:kept]) {
			t.Fatal("the records read do not encode back to the bytes kept")
		}
	})
}

// TestMappedJournal: where the journal is mapped, appends are copied into
// the mapping, the file grows ahead of them (twice over when the first
// part fills), readers of the file see every acknowledged record, and the
// log reopens whole.
func TestMappedJournal(t *testing.T) {
	if !canMapJournal {
		t.Skip("the journal is written with write(2) on this system")
	}
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	jpath := journalPath(t)
	l := openLog(t, s, signer, hkey, Options{Journal: jpath})
	mapped := func() (size int64, mem int) {
		size, _, m := journalState(l)
		return size, len(m)
	}
	var n int
	for size, mem := mapped(); mem <= journalMapMin; size, mem = mapped() {
		if mem != 0 && size > int64(mem) {
			t.Fatalf("%d bytes of frames in a mapping of %d", size, mem)
		}
		if _, err := l.Append(t.Context(), testRecord(n)); err != nil {
			t.Fatal(err)
		}
		n++
		if n == 1 {
			if _, mem := mapped(); mem != journalMapMin {
				t.Fatalf("the first append mapped %d bytes, want %d", mem, journalMapMin)
			}
		}
	}
	size, mem := mapped()
	if mem != 2*journalMapMin || fileSize(t, jpath) != int64(mem) {
		t.Fatalf("grown past its first part, the journal maps %d bytes of a %d-byte file, want %d of both", mem, fileSize(t, jpath), 2*journalMapMin)
	}
	if first, end, err := JournalRange(jpath); err != nil || first != 0 || end != int64(n) {
		t.Fatalf("a reader of the file sees records %d..%d (%v), want 0..%d", first, end-1, err, n-1)
	}
	t.Logf("%d records, %d bytes of frames", n, size)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyStore(t, s, verifier); rep.Records != int64(n) {
		t.Fatalf("the database holds %d records, want %d", rep.Records, n)
	}
}

// journalState is l's journal's frame bytes, how far the writer has faulted
// its mapping in, and the mapping.
func journalState(l *Log) (size, faulted int64, mem []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.journal.size, l.journal.faulted, l.journal.mem
}
