package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// Principal is who made a request.
type Principal struct {
	TokenID string
	Name    string
	Role    string
}

type principalKey struct{}

// PrincipalFrom returns the authenticated caller.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// HashToken is how tokens are kept: only their SHA-256. Tokens carry 256
// bits of randomness, so a fast hash is enough; no salt is needed.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// authenticator is the one place that decides whether a request may pass.
// The identity issue grows it into users, roles and API keys.
type authenticator struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time // time.Now unless a test sets it
	// audit records failed sign-ins; nil records nothing.
	audit    failureRecorder
	failures authFailures

	mu      sync.Mutex
	touched map[string]time.Time
	// verified holds tokens the store recently confirmed, keyed by hash, so
	// that a busy caller costs one database lookup per tokenCacheTTL rather
	// than one per request. The price: a token deleted in the database keeps
	// working for up to tokenCacheTTL. Only successful lookups are kept, so
	// a new token works at once and a wrong one is never remembered.
	verified map[[sha256.Size]byte]cachedToken
}

// tokenCacheTTL bounds how long a deleted token keeps working;
// tokenCacheSize bounds the memory the cache can take.
const (
	tokenCacheTTL  = 10 * time.Second
	tokenCacheSize = 1024
)

type cachedToken struct {
	token   store.Token
	expires time.Time
}

func (a *authenticator) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

// findToken is the store's FindToken behind the verified-token cache.
func (a *authenticator) findToken(ctx context.Context, token string) (store.Token, error) {
	key := sha256.Sum256([]byte(token))
	now := a.clock()
	a.mu.Lock()
	c, ok := a.verified[key]
	a.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.token, nil
	}
	t, err := a.store.FindToken(ctx, key[:])
	if err != nil {
		if ok {
			a.mu.Lock()
			delete(a.verified, key)
			a.mu.Unlock()
		}
		return t, err
	}
	a.mu.Lock()
	if a.verified == nil {
		a.verified = make(map[[sha256.Size]byte]cachedToken)
	}
	if _, present := a.verified[key]; !present && len(a.verified) >= tokenCacheSize {
		a.evict(now)
	}
	a.verified[key] = cachedToken{token: t, expires: now.Add(tokenCacheTTL)}
	a.mu.Unlock()
	return t, nil
}

// evict makes room for one entry: expired ones go first; if none has
// expired, an arbitrary one does, which costs its holder one lookup. Callers
// hold a.mu.
func (a *authenticator) evict(now time.Time) {
	for k, c := range a.verified {
		if !now.Before(c.expires) {
			delete(a.verified, k)
		}
	}
	for k := range a.verified {
		if len(a.verified) < tokenCacheSize {
			break
		}
		delete(a.verified, k)
	}
}

// public paths need no token: probes and the API description.
func public(path string) bool {
	switch path {
	case "/", "/healthz", "/readyz", "/api/openapi.json", "/api/openapi.yaml", "/api/openapi-3.0.json", "/api/openapi-3.0.yaml":
		return true
	}
	return strings.HasPrefix(path, "/api/schemas/")
}

func (a *authenticator) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if a.throttle(w, r) {
			return
		}
		// The scheme is case-insensitive (RFC 9110 §11.1).
		scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			a.refuse(w, r, "missing bearer token: send Authorization: Bearer <token> (see <data-dir>/bootstrap.token)", "")
			return
		}
		t, err := a.findToken(r.Context(), token)
		if errors.Is(err, store.ErrNotFound) {
			a.refuse(w, r, "invalid bearer token", token)
			return
		}
		if err != nil {
			a.log.Error("token lookup failed", "error", err)
			if openAIPath(r.URL.Path) {
				writeOpenAIError(w, &openAIError{Status: http.StatusServiceUnavailable, Type: errTypeAPI, Message: "the token store is unavailable; try again"})
				return
			}
			writeProblem(w, http.StatusServiceUnavailable, "the token store is unavailable; try again")
			return
		}
		a.touch(r.Context(), t.ID)
		ctx := context.WithValue(r.Context(), principalKey{}, Principal{TokenID: t.ID, Name: t.Name, Role: t.Role})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// touch records last use at most once a minute per token, so reads do not
// turn into a write each.
func (a *authenticator) touch(ctx context.Context, id string) {
	now := a.clock()
	a.mu.Lock()
	if a.touched == nil {
		a.touched = map[string]time.Time{}
	}
	last, seen := a.touched[id]
	if seen && now.Sub(last) < time.Minute {
		a.mu.Unlock()
		return
	}
	a.touched[id] = now
	a.mu.Unlock()
	if err := a.store.InTx(ctx, func(tx store.Tx) error { return tx.TouchToken(ctx, id, now.UTC()) }); err != nil {
		a.log.Warn("could not record token use", "error", err)
	}
}

func unauthorized(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="moat"`)
	if openAIPath(r.URL.Path) { // the SDKs parse only OpenAI's shape
		writeOpenAIError(w, &openAIError{Status: http.StatusUnauthorized, Type: errTypeAuth, Code: "invalid_api_key", Message: msg})
		return
	}
	writeProblem(w, http.StatusUnauthorized, msg)
}

// problem is an RFC 9457 body, as huma writes for its own operations.
type problem struct {
	Title  string          `json:"title"`
	Status int             `json:"status"`
	Detail string          `json:"detail,omitempty"`
	Errors []problemDetail `json:"errors,omitempty"`
}

type problemDetail struct {
	Message  string `json:"message"`
	Location string `json:"location,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, detail string, details ...problemDetail) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(problem{Title: http.StatusText(status), Status: status, Detail: detail, Errors: details})
}
