package audit

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// testKeys returns a fresh signer, its verifier and an HMAC key.
func testKeys(tb testing.TB) (note.Signer, note.Verifier, []byte) {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, KeyName)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	hkey := make([]byte, 32)
	rand.Read(hkey)
	return signer, verifier, hkey
}

// openStore opens a fresh SQLite store, closed when the test ends.
func openStore(tb testing.TB) (store.Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "moat.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, path
}

func openLog(tb testing.TB, s store.Store, signer note.Signer, hkey []byte, opts Options) *Log {
	tb.Helper()
	l, err := Open(context.Background(), s, signer, hkey, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// testRecord is record i of a test log.
func testRecord(i int) Record {
	return Record{
		Time:     time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		Actor:    fmt.Sprintf("user:u%d", i%7),
		Action:   []string{"ai.call", "secret.read", "vendor.update"}[i%3],
		Resource: fmt.Sprintf("connector/c%d", i%11),
		Outcome:  []Outcome{OK, Denied, Failed}[i%3],
		Details: map[string]any{
			"i": i, "tokens": map[string]any{"in": 120 + i%50, "out": 40},
			"input_sha256": fmt.Sprintf("%064x", i),
		},
	}
}

// fill appends n test records in batches.
func fill(tb testing.TB, l *Log, n int) {
	tb.Helper()
	const batch = 1000
	for i := 0; i < n; i += batch {
		recs := make([]Record, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			recs = append(recs, testRecord(j))
		}
		if _, err := l.Append(context.Background(), recs...); err != nil {
			tb.Fatal(err)
		}
	}
}

// testStoredRecord is a stored record built without a log.
func testStoredRecord(seq int64) store.AuditRecord {
	r := testRecord(int(seq))
	s, err := prepare([]byte("0123456789abcdef"), r, time.Time{})
	if err != nil {
		panic(err)
	}
	return store.AuditRecord{Seq: seq, Time: s.Time, Actor: s.Actor, Action: s.Action, Resource: s.Resource, Outcome: s.Outcome, Details: s.Details}
}
