package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/pgtest"
)

func verifyStore(t *testing.T, q store.AuditQueries, v note.Verifier) Report {
	t.Helper()
	rep, err := Verify(t.Context(), StoreSource(q, 0), v, VerifyOptions{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func TestAppendVerifyReopen(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{CheckpointEvery: 100})
	seqs, err := l.Append(t.Context(), testRecord(0), testRecord(1))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[0 1]" {
		t.Fatalf("seqs %v", seqs)
	}
	for i := 2; i < 250; i++ { // checkpoints at 100 and 200, and Close's at 250
		if _, err := l.Append(t.Context(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), testRecord(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	rep := verifyStore(t, s, verifier)
	if rep.Records != 250 || rep.Covered != 250 || rep.Checkpoints != 3 {
		t.Fatalf("report %+v: want 250 records all covered, the last by Close's checkpoint", rep)
	}

	// A reopened log continues the same tree.
	l2 := openLog(t, s, signer, hkey, Options{})
	seqs, err = l2.Append(t.Context(), testRecord(250))
	if err != nil || seqs[0] != 250 {
		t.Fatalf("append after reopen: %v %v", seqs, err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	rep = verifyStore(t, s, verifier)
	if rep.Records != 251 || rep.Covered != 251 {
		t.Fatalf("after reopen: %+v", rep)
	}

	// Another key cannot continue this log.
	other, _, _ := testKeys(t)
	if _, err := Open(t.Context(), s, other, hkey, Options{}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with another key: %v", err)
	}
	// Nor does the log verify under another key.
	_, otherV, _ := testKeys(t)
	if _, err := Verify(t.Context(), StoreSource(s, 0), otherV, VerifyOptions{}); !errors.Is(err, ErrTampered) {
		t.Fatalf("verify with another key: %v", err)
	}
}

func TestOpenRefusesTamperedHashes(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, _, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{})
	fill(t, l, 64)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Record 63 completes the whole tree; its last stored hash is the root.
	if _, err := s.WriterDB().Exec(`UPDATE audit_records SET hashes = zeroblob(length(hashes)) WHERE seq = 63`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), s, signer, hkey, Options{}); !errors.Is(err, ErrTampered) {
		t.Fatalf("open over tampered hashes: %v", err)
	}
}

// TestConcurrentAppends checks group commit: many appenders, dense unique
// sequence numbers, a log that verifies.
func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{CheckpointEvery: 97})
	const workers, each = 16, 50
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seqs, err := l.Append(t.Context(), testRecord(w*each+i))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, q := range seqs {
					seen[q] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct seqs, want %d", len(seen), workers*each)
	}
	for q := range int64(workers * each) {
		if !seen[q] {
			t.Fatalf("seq %d was never returned", q)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyStore(t, s, verifier); rep.Records != workers*each || rep.Covered != workers*each {
		t.Fatalf("report %+v", rep)
	}
}

// TestWritersTakeTurns: two logs on one store, as two nodes sharing a
// database, append single records (one statement each) and batches (a
// transaction each) in turn; each finds the other's records and continues
// after them, and the log stays dense and whole.
func TestWritersTakeTurns(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	logs := []*Log{
		openLog(t, s, signer, hkey, Options{CheckpointEvery: 7}),
		openLog(t, s, signer, hkey, Options{CheckpointEvery: 7}),
	}
	var want int64
	for i := range 40 {
		recs := []Record{testRecord(i)}
		if i%4 >= 2 {
			recs = append(recs, testRecord(i+1000), testRecord(i+2000))
		}
		seqs, err := logs[i%2].Append(t.Context(), recs...)
		if err != nil {
			t.Fatal(err)
		}
		if seqs[0] != want {
			t.Fatalf("append %d got seqs %v, want them from %d", i, seqs, want)
		}
		want += int64(len(recs))
	}
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if rep := verifyStore(t, s, verifier); rep.Records != want || rep.Covered != want {
		t.Fatalf("report %+v, want %d records", rep, want)
	}
}

// TestAppendsRacingClose: an Append that returns sequence numbers while
// the log closes has its records committed and covered by the last
// checkpoint; any other fails with ErrClosed. Appenders that find no
// commit under way commit themselves, the rest queue for the writer: both
// must end the same way.
func TestAppendsRacingClose(t *testing.T) {
	t.Parallel()
	checkAppendsRacingClose(t, 10, 5, func() Options { return Options{} })
}

// checkAppendsRacingClose closes a log, opened with opts, once eight
// goroutines have made startAfter appends between them and while they go
// on appending, trials times: the database must hold, covered by the last
// checkpoint, exactly the records of the appends that returned.
func checkAppendsRacingClose(t *testing.T, trials, startAfter int, opts func() Options) {
	for trial := range trials {
		s, _ := openStore(t)
		signer, verifier, hkey := testKeys(t)
		l := openLog(t, s, signer, hkey, opts())
		var (
			wg        sync.WaitGroup
			committed atomic.Int64
		)
		started := make(chan struct{})
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					if w == 0 && i == startAfter {
						close(started)
					}
					seqs, err := l.Append(t.Context(), testRecord(w*1000+i))
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					committed.Add(int64(len(seqs)))
				}
			})
		}
		<-started
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		rep := verifyStore(t, s, verifier)
		if rep.Records != committed.Load() || rep.Covered != committed.Load() {
			t.Fatalf("trial %d: %d appends acknowledged; report %+v", trial, committed.Load(), rep)
		}
	}
}

func TestTimedCheckpoint(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{CheckpointInterval: 20 * time.Millisecond})
	if _, err := l.Append(t.Context(), testRecord(0)); err != nil {
		t.Fatal(err)
	}
	// The writer checks once a tick; wait for it rather than for a time.
	for {
		cp, err := s.LatestAuditCheckpoint(t.Context())
		if err == nil && cp.Size == 1 {
			break
		}
		if t.Context().Err() != nil {
			t.Fatal("no timed checkpoint")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rep := verifyStore(t, s, verifier); rep.Covered != 1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestHMACSearch(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, _, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{})
	const canary = "ana.canary@example.com"
	if _, err := l.Append(t.Context(), Record{
		Actor: "user:ana", Action: "secret.read", Outcome: OK,
		Details: map[string]any{"subject": Sensitive(canary)},
	}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.ListAudit(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(recs[0].Details), canary) {
		t.Fatal("the sensitive value is stored in clear")
	}
	if !strings.Contains(string(recs[0].Details), l.HMAC(canary)) {
		t.Fatalf("details %s lack the HMAC a person computes with Log.HMAC", recs[0].Details)
	}
	var out bytes.Buffer
	if _, err := Export(t.Context(), s, 0, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), canary) || !strings.Contains(out.String(), l.HMAC(canary)) {
		t.Fatal("the export holds the value in clear, or lacks its HMAC")
	}
}

func TestAppendRefusesInvalidAtomically(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, _, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{})
	_, err := l.Append(t.Context(), testRecord(0), Record{Actor: "x", Action: "y", Outcome: "perhaps"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v", err)
	}
	if n, _ := s.AuditSize(t.Context()); n != 0 {
		t.Fatalf("a refused append stored %d records", n)
	}
}

// lockedStore makes every write transaction wait until released, like a
// database stuck on a lock or a full disk.
type lockedStore struct {
	store.Store
	release chan struct{}
}

func (s lockedStore) wait(ctx context.Context) error {
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s lockedStore) InTx(ctx context.Context, fn func(store.Tx) error) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Store.InTx(ctx, fn)
}

func (s lockedStore) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Store.AppendAudit(ctx, recs)
}

func TestAppendTimesOutWhenTheDatabaseHangs(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, verifier, hkey := testKeys(t)
	locked := lockedStore{Store: s, release: make(chan struct{})}
	l := openLog(t, locked, signer, hkey, Options{Timeout: 50 * time.Millisecond})
	if _, err := l.Append(t.Context(), testRecord(0)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("append to a hung database: %v, want ErrTimeout", err)
	}
	close(locked.release)
	// The log recovers once the database does, and stays whole.
	for {
		_, err := l.Append(t.Context(), testRecord(1))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrTimeout) {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	verifyStore(t, s, verifier)
}

func TestRecordLeafMatchesExportHash(t *testing.T) {
	t.Parallel()
	s, _ := openStore(t)
	signer, _, hkey := testKeys(t)
	l := openLog(t, s, signer, hkey, Options{})
	fill(t, l, 5)
	recs, err := s.ListAudit(t.Context(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		st := stored{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Resource: r.Resource, Outcome: r.Outcome, Details: r.Details}
		leaf, _ := leafHash(nil, &st)
		if !bytes.Equal(leaf[:], r.Hashes[:tlog.HashSize]) {
			t.Fatalf("record %d: stored leaf differs from the recomputed one", r.Seq)
		}
	}
}

// TestPostgres runs the log on Postgres (skipped without
// MOAT_TEST_DATABASE_URL), including a second writer, as a second node
// would be. Single records go in as one statement without the audit
// lock, batches in a transaction under it; the two meet.
func TestPostgres(t *testing.T) {
	t.Parallel()
	s := pgtest.Open(t)
	signer, verifier, hkey := testKeys(t)
	a := openLog(t, s, signer, hkey, Options{CheckpointEvery: 50})
	b := openLog(t, s, signer, hkey, Options{CheckpointEvery: 50})
	var wg sync.WaitGroup
	for _, l := range []*Log{a, b} {
		wg.Go(func() {
			for i := range 100 {
				recs := []Record{testRecord(i)}
				if i%5 == 4 {
					recs = append(recs, testRecord(i+1000), testRecord(i+2000))
				}
				if _, err := l.Append(t.Context(), recs...); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, l := range []*Log{a, b} {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if rep := verifyStore(t, s, verifier); rep.Records != 280 || rep.Covered != 280 {
		t.Fatalf("report %+v", rep)
	}
}
