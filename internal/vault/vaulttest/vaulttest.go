// Package vaulttest gives other packages' tests a real vault on a SQLite
// store of its own, with an access hook that keeps what it is told.
package vaulttest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

// Events is an access hook keeping every event.
type Events struct {
	mu   sync.Mutex
	list []vault.Event
}

func (e *Events) SecretAccessed(_ context.Context, ev vault.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
	return nil
}

// All returns every event so far.
func (e *Events) All() []vault.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]vault.Event(nil), e.list...)
}

// Of returns the events of one kind (vault.KindAccess, …).
func (e *Events) Of(kind string) []vault.Event {
	var out []vault.Event
	for _, ev := range e.All() {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// New opens a vault with a key file in a temporary directory; the store
// is closed when the test ends.
func New(tb testing.TB) (*vault.Vault, *Events) {
	tb.Helper()
	dir := tb.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "moat.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	ev := &Events{}
	v, err := vault.Open(context.Background(), vault.Config{Store: st, Source: vault.KeyFile{Path: filepath.Join(dir, vault.KeyFileName), Create: true}, Hook: ev})
	if err != nil {
		tb.Fatal(err)
	}
	return v, ev
}
