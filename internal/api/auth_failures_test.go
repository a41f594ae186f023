package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/store"
)

// auditRecords keeps the records it is given.
type auditRecords struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (m *auditRecords) Append(_ context.Context, recs ...audit.Record) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, recs...)
	return nil, nil
}

func (m *auditRecords) actions() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.recs {
		out = append(out, r.Action)
	}
	return out
}

func TestFailedSignInsAreRecordedAndThrottled(t *testing.T) {
	t.Parallel()
	st := &tokenStore{tokens: map[string]store.Token{}}
	st.add("moat_good", "tok_1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	rec := &auditRecords{}
	a := &authenticator{store: st, log: slog.New(slog.NewTextHandler(io.Discard, nil)), audit: rec,
		now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	h := a.middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	call := func(addr, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/projects", nil)
		req.RemoteAddr = addr
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}

	if w := call("192.0.2.1:4000", "moat_wrong"); w.Code != http.StatusUnauthorized {
		t.Fatalf("a wrong token: %d", w.Code)
	}
	r := rec.recs[0]
	if r.Action != "auth.failed" || r.Outcome != audit.Denied || r.Details["client"] != "192.0.2.1" || r.Details["reason"] != "invalid bearer token" {
		t.Fatalf("record = %+v", r)
	}
	if s, ok := r.Details["token"].(audit.SensitiveValue); !ok || strings.Contains(fmt.Sprint(r.Details), "moat_wrong") {
		t.Fatalf("the tried token is not kept as a sensitive value only: %#v", s)
	}
	for i := 1; i < maxAuthFailures; i++ {
		token := ""
		if i%2 == 0 {
			token = fmt.Sprintf("moat_guess_%d", i)
		}
		if w := call(fmt.Sprintf("192.0.2.1:%d", 4000+i), token); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, w.Code)
		}
	}
	lookups := st.count()
	// Past the limit the address is refused, even with a good token, and
	// nothing is looked up; the refusal is recorded once.
	for range 3 {
		w := call("192.0.2.1:5000", "moat_good")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
			t.Fatalf("after %d failures: %d, Retry-After %q", maxAuthFailures, w.Code, w.Header().Get("Retry-After"))
		}
	}
	if st.count() != lookups {
		t.Fatal("a throttled request still reached the token store")
	}
	got := strings.Join(rec.actions(), ",")
	if want := strings.Repeat("auth.failed,", maxAuthFailures) + "auth.throttled"; got != want {
		t.Fatalf("records %s, want %s", got, want)
	}
	// Another address is not held back.
	if w := call("198.51.100.7:1", "moat_good"); w.Code != http.StatusNoContent {
		t.Fatalf("another address: %d", w.Code)
	}
	// Once the window ends the address may try again.
	mu.Lock()
	now = now.Add(authFailureWindow + time.Second)
	mu.Unlock()
	if w := call("192.0.2.1:5000", "moat_good"); w.Code != http.StatusNoContent {
		t.Fatalf("after the window: %d", w.Code)
	}
}

func TestFailingClientsAreBounded(t *testing.T) {
	t.Parallel()
	var f authFailures
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxFailingClients + 50 {
		f.fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256), now)
	}
	if n := len(f.clients); n > maxFailingClients {
		t.Fatalf("%d clients kept, want at most %d", n, maxFailingClients)
	}
}
