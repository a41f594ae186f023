package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of the OAuth 2.0 client credentials grant.
const (
	// maxTokenResponse bounds what is read of a token endpoint's answer.
	maxTokenResponse = 64 << 10
	// maxAccessToken bounds the token sent upstream in a header.
	maxAccessToken = 16 << 10
	// defaultTokenLifetime is how long a token whose answer says nothing
	// of its lifetime is kept; a 401 refreshes it sooner.
	defaultTokenLifetime = time.Hour
	// maxTokenLifetime caps what an answer may claim.
	maxTokenLifetime = 24 * time.Hour
	// tokenRefreshMargin: a token is refreshed this long before it
	// expires (at most half its lifetime), so that no request carries one
	// that expires on the way.
	tokenRefreshMargin = 30 * time.Second
	// tokenRequestTimeout bounds one token request, whoever waits for it.
	tokenRequestTimeout = 30 * time.Second
	// maxTokenErrorText bounds what of a token endpoint's error is kept.
	maxTokenErrorText = 200
)

// oauthTokens gets and caches a connector's access token with the client
// credentials grant (RFC 6749 section 4.4). Callers needing a token at once
// share one request (single flight); the client secret is resolved for
// the token URL's host and sent there only.
type oauthTokens struct {
	tokenURL  string
	tokenHost string
	clientID  string
	scopes    []string
	audience  string
	client    *http.Client
	// secret gives the client secret for a request to host; the vault
	// checks that host against the secret's bindings.
	secret func(ctx context.Context, host string) ([]byte, error)
	// denied wraps a refusal to give the secret.
	denied func(host string, err error) error
	now    func() time.Time

	mu      sync.Mutex
	current string
	expires time.Time
	// inflight is the token request callers are waiting for, if any.
	inflight *tokenFetch
}

type tokenFetch struct {
	done  chan struct{}
	token string
	err   error
	// waiters counts the callers that joined, the first included.
	waiters int
}

// token is a valid access token. stale, when not "", is a token the
// upstream refused: it is dropped unless another caller already replaced
// it, so that concurrent refusals cause one refresh.
func (s *oauthTokens) token(ctx context.Context, stale string) (string, error) {
	s.mu.Lock()
	if stale != "" && s.current == stale {
		s.current = ""
	}
	if s.current != "" && s.now().Before(s.expires) {
		tok := s.current
		s.mu.Unlock()
		return tok, nil
	}
	f := s.inflight
	if f == nil {
		f = &tokenFetch{done: make(chan struct{})}
		s.inflight = f
		// The request outlives a caller that gives up: the others, and
		// the next call, still need the token.
		go s.fetch(context.WithoutCancel(ctx), f)
	}
	f.waiters++
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (s *oauthTokens) fetch(ctx context.Context, f *tokenFetch) {
	ctx, cancel := context.WithTimeout(ctx, tokenRequestTimeout)
	defer cancel()
	start := s.now()
	tok, lifetime, err := s.request(ctx)
	s.mu.Lock()
	s.inflight = nil
	if err == nil {
		s.current = tok
		s.expires = start.Add(lifetime - min(tokenRefreshMargin, lifetime/2))
	}
	s.mu.Unlock()
	f.token, f.err = tok, err
	close(f.done)
}

// request asks the token endpoint for a token.
func (s *oauthTokens) request(ctx context.Context) (string, time.Duration, error) {
	secret, err := s.secret(ctx, s.tokenHost)
	if err != nil {
		return "", 0, s.denied(s.tokenHost, err)
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(s.scopes) > 0 {
		form.Set("scope", strings.Join(s.scopes, " "))
	}
	if s.audience != "" {
		form.Set("audience", s.audience)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, &TokenError{Host: s.tokenHost, Err: errors.New("the token URL does not make a request")}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// client_secret_basic, which every server must accept (RFC 6749
	// section 2.3.1): both parts form-encoded first.
	req.SetBasicAuth(url.QueryEscape(s.clientID), url.QueryEscape(string(secret)))
	resp, err := s.client.Do(req)
	if err != nil {
		// url.Error repeats the URL; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", 0, &TokenError{Host: s.tokenHost, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return "", 0, &TokenError{Host: s.tokenHost, Status: resp.StatusCode, Err: errors.New("redirects are not followed: the client secret goes to the token URL only")}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	switch {
	case err != nil:
		return "", 0, &TokenError{Host: s.tokenHost, Status: resp.StatusCode, Err: fmt.Errorf("read the answer: %w", err)}
	case len(body) > maxTokenResponse:
		return "", 0, &TokenError{Host: s.tokenHost, Status: resp.StatusCode, Err: fmt.Errorf("the answer is larger than %d bytes", maxTokenResponse)}
	}
	tok, lifetime, err := parseTokenResponse(resp.StatusCode, body)
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) {
			te.Host = s.tokenHost
			// An endpoint that repeats what it was sent must not make
			// the secret part of an error.
			if len(secret) > 0 {
				te.Description = strings.ReplaceAll(te.Description, string(secret), "[redacted]")
			}
		}
		return "", 0, err
	}
	return tok, lifetime, nil
}

// TokenError is an OAuth 2.0 token endpoint's refusal, or a failure to get
// its answer. It names the endpoint's host, the status and the error code
// and description the endpoint gave, never the client secret or a token.
type TokenError struct {
	Host        string
	Status      int // 0 when there was no answer
	Code        string
	Description string
	Err         error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "oauth2 token endpoint %s", e.Host)
	if e.Status != 0 {
		fmt.Fprintf(&b, " answered %d", e.Status)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, ": %s", e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, " (%s)", e.Description)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *TokenError) Unwrap() error { return e.Err }

// permanent reports whether asking again cannot help until the
// configuration changes: the endpoint refused the client (4xx other than
// 429, or an error in a 2xx answer) or answered what is not a token.
func (e *TokenError) permanent() bool {
	if e.Status == http.StatusTooManyRequests || e.Status >= 500 || e.Status == 0 {
		return false
	}
	return true
}

// tokenAnswer is a token endpoint's JSON (RFC 6749 sections 5.1 and 5.2).
type tokenAnswer struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

// parseTokenResponse reads a token endpoint's answer: the access token and
// how long it may be kept, or a *TokenError.
func parseTokenResponse(status int, body []byte) (string, time.Duration, error) {
	var a tokenAnswer
	decodeErr := json.Unmarshal(body, &a)
	if status < 200 || status > 299 || a.Error != "" {
		te := &TokenError{Status: status}
		if decodeErr == nil {
			te.Code = plainText(a.Error, 64)
			te.Description = plainText(a.ErrorDescription, maxTokenErrorText)
		}
		if te.Code == "" && te.Description == "" {
			te.Err = errors.New("the answer is not an OAuth 2.0 error")
		}
		return "", 0, te
	}
	if decodeErr != nil {
		return "", 0, &TokenError{Status: status, Err: errors.New("the answer is not a JSON object")}
	}
	if !validAccessToken(a.AccessToken) {
		return "", 0, &TokenError{Status: status, Err: fmt.Errorf("the answer has no usable access_token (1 to %d visible ASCII characters)", maxAccessToken)}
	}
	if a.TokenType != "" && !strings.EqualFold(a.TokenType, "bearer") {
		return "", 0, &TokenError{Status: status, Err: fmt.Errorf("token_type %q is not Bearer", plainText(a.TokenType, 32))}
	}
	lifetime, err := tokenLifetime(a.ExpiresIn)
	if err != nil {
		return "", 0, &TokenError{Status: status, Err: err}
	}
	return a.AccessToken, lifetime, nil
}

// tokenLifetime reads expires_in: seconds, as a number or (as some
// servers send it) a string of digits; absent or null is the default.
func tokenLifetime(raw json.RawMessage) (time.Duration, error) {
	text := strings.TrimSpace(string(raw))
	if text == "" || text == "null" {
		return defaultTokenLifetime, nil
	}
	if unquoted, err := strconv.Unquote(text); err == nil {
		text = unquoted
	}
	secs, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
		return 0, errors.New("expires_in is not a number of seconds")
	}
	if secs <= 0 {
		// Usable for the request at hand only.
		return 0, nil
	}
	if secs >= maxTokenLifetime.Seconds() {
		return maxTokenLifetime, nil
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// validAccessToken reports whether tok can go in a header as it is:
// visible ASCII, bounded.
func validAccessToken(tok string) bool {
	if tok == "" || len(tok) > maxAccessToken {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < 0x21 || tok[i] > 0x7e {
			return false
		}
	}
	return true
}

// plainText keeps the printable ASCII of s (what RFC 6749 allows in an
// error and its description), at most n bytes of it.
func plainText(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}
