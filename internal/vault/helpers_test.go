package vault

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// memHook is the in-memory AccessHook of the tests: it keeps every event
// and fails when told to.
type memHook struct {
	mu     sync.Mutex
	events []Event
	fail   error
}

func (h *memHook) SecretAccessed(_ context.Context, e Event) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail != nil {
		return h.fail
	}
	h.events = append(h.events, e)
	return nil
}

func (h *memHook) setFail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail = err
}

func (h *memHook) take() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.events
	h.events = nil
	return out
}

func (h *memHook) kinds(kind string) []Event {
	var out []Event
	for _, e := range h.take() {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	dir   string
	db    string
	store store.Store
	hook  *memHook
	clock *clock
	v     *Vault
}

// newEnv opens a SQLite store in a temporary directory and a vault on it
// with a key file; edit tweaks the config.
func newEnv(t testing.TB, edit ...func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, db: filepath.Join(dir, "moat.db"), hook: &memHook{}, clock: newClock()}
	s, err := sqlite.Open(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e.store = s
	e.v = e.open(t, edit...)
	return e
}

func (e *env) config(edit ...func(*Config)) Config {
	cfg := Config{
		Store: e.store, Hook: e.hook, Now: e.clock.now,
		Source: KeyFile{Path: filepath.Join(e.dir, KeyFileName), Create: true},
	}
	for _, f := range edit {
		f(&cfg)
	}
	return cfg
}

// open opens another vault on the same store and key source.
func (e *env) open(t testing.TB, edit ...func(*Config)) *Vault {
	t.Helper()
	v, err := Open(context.Background(), e.config(edit...))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func bound(connector string, hosts ...string) Options {
	return Options{Bindings: Bindings{Connectors: []string{connector}, Hosts: hosts}}
}

func access(envName, connector, host string) Access {
	return Access{RunID: "run_1", Workflow: "support/triage", Environment: envName, Connector: connector, Host: host}
}

func set(t testing.TB, v *Vault, envName, name, value string, opts Options) SecretInfo {
	t.Helper()
	info, err := v.Set(context.Background(), envName, name, []byte(value), opts)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func resolve(t testing.TB, v *Vault, a Access, envName, name string) string {
	t.Helper()
	got, err := v.Resolve(context.Background(), a, envName, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(got)
}

// wantErr checks that err wraps each target and does not quote secret.
func wantErr(t testing.TB, err error, secret string, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("error %q does not wrap %v", err, target)
		}
	}
	if !strings.HasPrefix(err.Error(), "vault: ") {
		t.Fatalf("error %q lacks the vault: prefix", err)
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Fatalf("error %q carries the secret", err)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// faultStore wraps a store so that tests can fail or stop a rewrap in the
// middle of a transaction.
type faultStore struct {
	store.Store
	mu       sync.Mutex
	calls    int
	onRewrap func(call int) error
}

func (f *faultStore) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	return f.Store.InTx(ctx, func(tx store.Tx) error { return fn(&faultTx{Tx: tx, f: f}) })
}

type faultTx struct {
	store.Tx
	f *faultStore
}

func (t *faultTx) RewrapSecret(ctx context.Context, id string, version int, from, to uint32, ct []byte) (bool, error) {
	t.f.mu.Lock()
	t.f.calls++
	call, hook := t.f.calls, t.f.onRewrap
	t.f.mu.Unlock()
	if hook != nil {
		if err := hook(call); err != nil {
			return false, err
		}
	}
	return t.Tx.RewrapSecret(ctx, id, version, from, to, ct)
}

// corruptCiphertext changes the byte at pos (an SQL expression, counted
// from 1) of the ciphertext of the secrets matching where, to a value it
// did not hold: setting it to a constant left one row in 256 unchanged.
func (e *env) corruptCiphertext(t testing.TB, pos, where string) {
	t.Helper()
	q := `UPDATE vault_secrets SET ciphertext = CAST(substr(ciphertext, 1, ` + pos + ` - 1)
		|| CASE WHEN substr(ciphertext, ` + pos + `, 1) = x'00' THEN x'01' ELSE x'00' END
		|| substr(ciphertext, ` + pos + ` + 1) AS BLOB) WHERE ` + where
	if _, err := e.store.WriterDB().ExecContext(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}
