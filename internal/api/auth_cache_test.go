package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// tokenStore is a store holding only tokens, counting the lookups that
// reach it.
type tokenStore struct {
	store.Store
	mu      sync.Mutex
	tokens  map[string]store.Token // by hash
	lookups int
	fail    error
}

func (s *tokenStore) FindToken(_ context.Context, hash []byte) (store.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	if s.fail != nil {
		return store.Token{}, s.fail
	}
	t, ok := s.tokens[string(hash)]
	if !ok {
		return store.Token{}, store.ErrNotFound
	}
	return t, nil
}

func (s *tokenStore) InTx(context.Context, func(store.Tx) error) error { return nil }

func (s *tokenStore) add(token, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[string(HashToken(token))] = store.Token{ID: id, Name: id, Role: "admin"}
}

func (s *tokenStore) remove(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, string(HashToken(token)))
}

func (s *tokenStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups
}

func TestTokenCache(t *testing.T) {
	st := &tokenStore{tokens: map[string]store.Token{}}
	st.add("good", "tok_1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &authenticator{store: st, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now }}
	ctx := context.Background()

	for range 3 {
		got, err := a.findToken(ctx, "good")
		if err != nil || got.ID != "tok_1" {
			t.Fatalf("findToken = %+v, %v", got, err)
		}
	}
	if n := st.count(); n != 1 {
		t.Fatalf("a verified token was looked up %d times within the TTL, want 1", n)
	}

	for range 2 {
		if _, err := a.findToken(ctx, "wrong"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("wrong token: err = %v, want ErrNotFound", err)
		}
	}
	if n := st.count(); n != 3 {
		t.Fatalf("a wrong token must reach the store every time: %d lookups, want 3", n)
	}

	// Deleted in the database: still accepted until the TTL runs out, then
	// refused.
	st.remove("good")
	now = now.Add(tokenCacheTTL - time.Nanosecond)
	if _, err := a.findToken(ctx, "good"); err != nil {
		t.Fatalf("within the TTL: err = %v", err)
	}
	now = now.Add(time.Nanosecond)
	if _, err := a.findToken(ctx, "good"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after the TTL: err = %v, want ErrNotFound", err)
	}
	if _, ok := a.verified[sha256.Sum256([]byte("good"))]; ok {
		t.Fatal("a refused token stayed in the cache")
	}

	// A store failure after expiry is reported, not covered by the cache.
	st.add("good", "tok_1")
	if _, err := a.findToken(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(tokenCacheTTL)
	st.fail = errors.New("disk on fire")
	if _, err := a.findToken(ctx, "good"); err == nil {
		t.Fatal("an expired entry hid a store failure")
	}
}

func TestTokenCacheBounded(t *testing.T) {
	st := &tokenStore{tokens: map[string]store.Token{}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &authenticator{store: st, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now }}
	for i := range 2*tokenCacheSize + 5 {
		tok := fmt.Sprintf("t%d", i)
		st.add(tok, tok)
		if _, err := a.findToken(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		if len(a.verified) > tokenCacheSize {
			t.Fatalf("cache holds %d entries, bound is %d", len(a.verified), tokenCacheSize)
		}
		if i%100 == 0 {
			now = now.Add(time.Second)
		}
	}
}
