package vault

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

func openRunKeys(t testing.TB, dir string) store.RunKeyStore {
	t.Helper()
	ks, err := sqlite.OpenRunKeys(context.Background(), filepath.Join(dir, "run-keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.Close() })
	return ks
}

func field(run, kind, name string) store.PayloadField {
	return store.PayloadField{RunID: run, Kind: kind, Name: name}
}

func TestPayloadSealOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	p := e.v.PayloadKeys(openRunKeys(t, e.dir), PayloadKeysOptions{})
	in := field("run-1", store.PayloadInput, "input")
	plain := []byte(`{"email":"jane@example.com"}`)
	sealed, err := p.Seal(ctx, in, plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("jane")) || sealed[0] != payloadFormatV1 {
		t.Fatalf("sealed payload %q", sealed)
	}
	again, _ := p.Seal(ctx, in, plain)
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of one value are alike; nonces must be fresh")
	}
	got, err := p.Open(ctx, in, sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}

	// A payload opens only as the field, kind and run it was sealed as.
	for _, other := range []store.PayloadField{
		field("run-1", store.PayloadInput, "output"),
		field("run-1", store.PayloadSteps, "input"),
		field("run-2", store.PayloadInput, "input"),
	} {
		if _, err := p.Seal(ctx, other, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Open(ctx, other, sealed); !errors.Is(err, ErrCorrupt) {
			t.Errorf("opened as %+v: %v, want ErrCorrupt", other, err)
		}
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	if _, err := p.Open(ctx, in, flipped); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a flipped bit: %v, want ErrCorrupt", err)
	}
	if _, err := p.Open(ctx, in, sealed[:10]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a truncated payload: %v, want ErrCorrupt", err)
	}
	// Written before payloads were sealed: given back as it is.
	if got, err := p.Open(ctx, in, []byte(`{"legacy":true}`)); err != nil || string(got) != `{"legacy":true}` {
		t.Errorf("legacy payload: %q, %v", got, err)
	}

	// Deterministic fields seal equal values alike, and only those.
	tok := store.PayloadField{RunID: "run-1", Kind: store.PayloadInput, Name: "token:pii.email", Deterministic: true}
	a, _ := p.Seal(ctx, tok, []byte("jane@example.com"))
	b, _ := p.Seal(ctx, tok, []byte("jane@example.com"))
	c, _ := p.Seal(ctx, tok, []byte("john@example.com"))
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatal("deterministic sealing does not compare values")
	}
	if got, err := p.Open(ctx, tok, a); err != nil || string(got) != "jane@example.com" {
		t.Fatalf("Open deterministic = %q, %v", got, err)
	}
}

func TestPayloadDestroyReachesOtherNodesAndCopies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := openRunKeys(t, e.dir)
	p := e.v.PayloadKeys(keys, PayloadKeysOptions{CacheTTL: time.Minute})
	// A second node: another vault on the same database and keys.
	other := e.open(t).PayloadKeys(keys, PayloadKeysOptions{CacheTTL: time.Minute})

	in := field("run-1", store.PayloadInput, "input")
	out := field("run-1", store.PayloadOutput, "output")
	sealedIn, _ := p.Seal(ctx, in, []byte("the input"))
	sealedOut, _ := p.Seal(ctx, out, []byte("the output"))
	if _, err := other.Open(ctx, in, sealedIn); err != nil {
		t.Fatal(err)
	}

	if err := p.Destroy(ctx, store.RunKeyRef{RunID: "run-1", Kind: store.PayloadInput}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Open(ctx, in, sealedIn); !errors.Is(err, store.ErrPayloadDestroyed) {
		t.Fatalf("Open after Destroy: %v, want ErrPayloadDestroyed", err)
	}
	if got, err := p.Open(ctx, out, sealedOut); err != nil || string(got) != "the output" {
		t.Fatalf("another kind of the run: %q, %v", got, err)
	}
	// The other node forgets its cached key within the cache's lifetime.
	e.clock.add(time.Minute + time.Second)
	if _, err := other.Open(ctx, in, sealedIn); !errors.Is(err, store.ErrPayloadDestroyed) {
		t.Fatalf("Open on another node after its cache expired: %v, want ErrPayloadDestroyed", err)
	}
	// A destroyed kind is never made again: a late write fails rather
	// than seal under a fresh key.
	if _, err := p.Seal(ctx, in, []byte("late")); !errors.Is(err, store.ErrPayloadDestroyed) {
		t.Fatalf("Seal after Destroy: %v, want ErrPayloadDestroyed", err)
	}
}

func TestPayloadKeysFollowTheSeal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	p := e.v.PayloadKeys(openRunKeys(t, e.dir), PayloadKeysOptions{})
	in := field("run-1", store.PayloadInput, "input")
	sealed, err := p.Seal(ctx, in, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	e.v.Seal()
	if _, err := p.Open(ctx, in, sealed); !errors.Is(err, ErrSealed) {
		t.Fatalf("Open while sealed: %v, want ErrSealed (the cache must be emptied)", err)
	}
	if _, err := p.Seal(ctx, field("run-2", store.PayloadInput, "input"), []byte("x")); !errors.Is(err, ErrSealed) {
		t.Fatalf("Seal while sealed: %v, want ErrSealed", err)
	}
}

func TestPayloadKeysRewrapAndRetire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	p := e.v.PayloadKeys(openRunKeys(t, e.dir), PayloadKeysOptions{CacheTTL: -1})
	in := field("run-1", store.PayloadInput, "input")
	sealed, err := p.Seal(ctx, in, []byte("kept across rotation"))
	if err != nil {
		t.Fatal(err)
	}
	term, err := e.v.RotateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.v.SetMinDecryptionTerm(ctx, term); !errors.Is(err, ErrTermInUse) {
		t.Fatalf("retiring a term run keys use: %v, want ErrTermInUse", err)
	}
	res, err := e.v.Rewrap(ctx, RewrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.RunKeys != len(store.PayloadKinds) || res.RunKeysFailed != 0 {
		t.Fatalf("rewrap moved %d run keys (%d failed), want %d", res.RunKeys, res.RunKeysFailed, len(store.PayloadKinds))
	}
	if err := e.v.SetMinDecryptionTerm(ctx, term); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Open(ctx, in, sealed); err != nil || string(got) != "kept across rotation" {
		t.Fatalf("Open after rewrap and retirement: %q, %v", got, err)
	}
}

func FuzzPayloadOpen(f *testing.F) {
	e := newEnv(f)
	p := e.v.PayloadKeys(openRunKeys(f, e.dir), PayloadKeysOptions{})
	in := field("run-1", store.PayloadInput, "input")
	sealed, err := p.Seal(context.Background(), in, []byte(`{"a":1}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add([]byte{payloadFormatV1})
	f.Add([]byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := p.Open(context.Background(), in, b)
		switch {
		case len(b) == 0 || b[0] != payloadFormatV1:
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("unsealed input came back as %q, %v", got, err)
			}
		case err == nil && !bytes.Equal(b, sealed):
			t.Fatalf("a forged payload %x opened as %q", b, got)
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
	})
}

// staleKeys answers the first lookup with "not found", as a node does that
// looked just before another node made the run's keys.
type staleKeys struct {
	store.RunKeyStore
	stale bool
}

func (s *staleKeys) GetRunKey(ctx context.Context, runID, kind string) (store.RunKey, error) {
	if s.stale {
		s.stale = false
		return store.RunKey{}, store.ErrNotFound
	}
	return s.RunKeyStore.GetRunKey(ctx, runID, kind)
}

// Two nodes making one run's keys at once: the one that loses uses the
// winner's keys.
func TestPayloadKeysMadeByAnotherNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := openRunKeys(t, e.dir)
	winner := e.v.PayloadKeys(keys, PayloadKeysOptions{})
	loser := e.open(t).PayloadKeys(&staleKeys{RunKeyStore: keys, stale: true}, PayloadKeysOptions{})
	if err := winner.Prepare(ctx, "run-1"); err != nil {
		t.Fatal(err)
	}
	in := field("run-1", store.PayloadInput, "input")
	sealed, err := loser.Seal(ctx, in, []byte("both nodes read this"))
	if err != nil {
		t.Fatalf("Seal on the node that lost the race: %v", err)
	}
	if got, err := winner.Open(ctx, in, sealed); err != nil || string(got) != "both nodes read this" {
		t.Fatalf("Open on the other node: %q, %v", got, err)
	}
}
