// Package audittest gives other packages' tests a real audit log, with keys
// made for the test.
package audittest

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// New opens an audit log on a SQLite database of its own in a temporary
// directory, both closed when the test ends. Like moat serve on SQLite it
// keeps a journal, so a test that reads the database after appending must
// call the log's Flush first.
func New(tb testing.TB) (*audit.Log, store.Store) {
	tb.Helper()
	dir := tb.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "audit.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return open(tb, st, audit.Options{Journal: filepath.Join(dir, audit.JournalFile)}), st
}

// OpenLog opens an audit log on st with a fresh signing key and HMAC key,
// closed when the test ends. It keeps no journal: each Append returns once
// the database holds its records.
func OpenLog(tb testing.TB, st store.Store) *audit.Log {
	tb.Helper()
	return open(tb, st, audit.Options{})
}

func open(tb testing.TB, st store.Store, opts audit.Options) *audit.Log {
	tb.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, audit.KeyName)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	hkey := make([]byte, 32)
	rand.Read(hkey)
	l, err := audit.Open(context.Background(), st, signer, hkey, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}
