package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/vault"
	"github.com/moatproject/moat/internal/vault/vaulttest"
)

const oauthClientSecret = "cs-oauth-canary-V9p3Rk"

// tokenServer is a fake OAuth 2.0 token endpoint: it counts requests,
// records what each sent and by default issues tok-1, tok-2, … valid for
// an hour.
type tokenServer struct {
	srv *httptest.Server

	mu    sync.Mutex
	n     int
	forms []url.Values
	users []string
	pass  []string
	// answer, when set and returning true, has written the response.
	answer func(n int, w http.ResponseWriter) bool
	// gate, when set, holds every answer until it is closed.
	gate chan struct{}
}

func newTokenServer(t *testing.T) *tokenServer {
	t.Helper()
	ts := &tokenServer{}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	user, pass, _ := r.BasicAuth()
	user, _ = url.QueryUnescape(user)
	pass, _ = url.QueryUnescape(pass)
	ts.mu.Lock()
	ts.n++
	n := ts.n
	ts.forms = append(ts.forms, r.PostForm)
	ts.users = append(ts.users, user)
	ts.pass = append(ts.pass, pass)
	answer, gate := ts.answer, ts.gate
	ts.mu.Unlock()
	if gate != nil {
		<-gate
	}
	w.Header().Set("Content-Type", "application/json")
	if answer != nil && answer(n, w) {
		return
	}
	fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":3600}`, n)
}

func (ts *tokenServer) requests() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.n
}

func oauthCredential(tokenURL string) *Credential {
	return &Credential{
		Secret: "idp-secret", Scheme: SchemeOAuth2, TokenURL: tokenURL + "/oauth2/token",
		ClientID: "moat gateway", Scopes: []string{"inference", "api:read"}, Audience: "https://api.example.com",
	}
}

// oauthSetup is an upstream, a token endpoint and a vault whose client
// secret is bound to the hosts given (both when none).
func oauthSetup(t *testing.T, typ string, hosts func(up, idp string) []string) (*headerUpstream, *tokenServer, Connector, *vault.Vault, *vaulttest.Events) {
	t.Helper()
	up, ts := newHeaderUpstream(t), newTokenServer(t)
	upHost, idpHost := hostOf(t, up.srv.URL), hostOf(t, ts.srv.URL)
	bound := []string{upHost, idpHost}
	if hosts != nil {
		bound = hosts(upHost, idpHost)
	}
	v, ev := newSecretsVault(t, testSecret{name: "idp-secret", value: oauthClientSecret, connectors: []string{"up"}, hosts: bound})
	c := upstreamConnector(typ, up.srv.URL, oauthCredential(ts.srv.URL))
	if problems := CheckConnector(c); len(problems) > 0 {
		t.Fatalf("the connector does not check: %v", problems)
	}
	return up, ts, c, v, ev
}

func accessesFor(ev *vaulttest.Events, host string) []vault.Event {
	var out []vault.Event
	for _, a := range ev.Of(vault.KindAccess) {
		if a.Access.Host == host {
			out = append(out, a)
		}
	}
	return out
}

// The token is asked for once, with the client's credentials, scopes and
// audience, and reused until shortly before it expires; then refreshed.
// Every upstream request and every token request is a vault access for
// its own host.
func TestOAuth2TokenReusedUntilExpiry(t *testing.T) {
	t.Parallel()
	up, ts, c, v, ev := oauthSetup(t, TypeHTTP, nil)
	clock := newFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	cat, err := buildOne(t, c, CatalogOptions{Secrets: v, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := callUp(t, cat); err != nil {
			t.Fatal(err)
		}
	}
	if n := ts.requests(); n != 1 {
		t.Fatalf("%d token requests for 3 calls, want 1", n)
	}
	form := ts.forms[0]
	if form.Get("grant_type") != "client_credentials" || form.Get("scope") != "inference api:read" || form.Get("audience") != "https://api.example.com" {
		t.Errorf("token request form = %v", form)
	}
	if form.Has("client_secret") || ts.users[0] != "moat gateway" || ts.pass[0] != oauthClientSecret {
		t.Errorf("client authentication: user %q, secret sent in basic auth %v, in the form %v", ts.users[0], ts.pass[0] == oauthClientSecret, form.Has("client_secret"))
	}
	// Expires at +3600s, refreshed 30s before.
	clock.Advance(3569 * time.Second)
	if err := callUp(t, cat); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	if err := callUp(t, cat); err != nil {
		t.Fatal(err)
	}
	if n := ts.requests(); n != 2 {
		t.Fatalf("%d token requests, want 2 (one refresh)", n)
	}
	var auth []string
	for _, h := range up.seen() {
		auth = append(auth, h.Get("Authorization"))
	}
	want := []string{"Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"}
	if !equalSlices(auth, want) {
		t.Errorf("upstream saw %q, want %q", auth, want)
	}
	if n := len(accessesFor(ev, hostOf(t, ts.srv.URL))); n != 2 {
		t.Errorf("%d vault accesses for the token host, want 2 (one per token request)", n)
	}
	if n := len(accessesFor(ev, hostOf(t, up.srv.URL))); n != 5 {
		t.Errorf("%d vault accesses for the upstream host, want 5 (one per call)", n)
	}
}

// Every connector type gets the token as a bearer token in Authorization;
// no SDK key header is left with the marker.
func TestOAuth2ForEveryConnectorType(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{TypeHTTP, TypeOpenAI, TypeAnthropic} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			up, _, c, v, _ := oauthSetup(t, typ, nil)
			cat, err := buildOne(t, c, CatalogOptions{Secrets: v})
			if err != nil {
				t.Fatal(err)
			}
			if err := callUp(t, cat); err != nil {
				t.Fatal(err)
			}
			h := up.seen()[0]
			if got := h.Get("Authorization"); got != "Bearer tok-1" {
				t.Errorf("Authorization = %q", got)
			}
			if got := h.Get("X-Api-Key"); got != "" {
				t.Errorf("X-Api-Key = %q, want none", got)
			}
		})
	}
}

// An upstream answering 401 gets one refreshed token and the request sent
// again, body and all; a second 401 is the answer.
func TestOAuth2RefreshesOnceOn401(t *testing.T) {
	t.Parallel()
	t.Run("revoked token", func(t *testing.T) {
		t.Parallel()
		up, ts, c, v, _ := oauthSetup(t, TypeOpenAI, nil)
		up.reject = func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer tok-1" }
		cat, err := buildOne(t, c, CatalogOptions{Secrets: v})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := callUp(t, cat); err != nil {
				t.Fatal(err)
			}
		}
		if n := ts.requests(); n != 2 {
			t.Errorf("%d token requests, want 2", n)
		}
		bodies := up.sentBodies()
		if len(bodies) != 3 || bodies[0] != bodies[1] || bodies[0] == "" {
			t.Errorf("upstream bodies = %q, want the first sent twice, then one", bodies)
		}
	})
	t.Run("refused again", func(t *testing.T) {
		t.Parallel()
		up, ts, c, v, _ := oauthSetup(t, TypeHTTP, nil)
		up.reject = func(*http.Request) bool { return true }
		cat, err := buildOne(t, c, CatalogOptions{Secrets: v})
		if err != nil {
			t.Fatal(err)
		}
		if err := callUp(t, cat); err == nil {
			t.Fatal("the call succeeded")
		}
		if n, m := ts.requests(), len(up.seen()); n != 2 || m != 2 {
			t.Errorf("%d token requests and %d upstream requests, want 2 and 2", n, m)
		}
	})
}

// Callers needing a token at once share one token request, and so do
// callers refused with the same stale token.
func TestOAuth2SingleFlight(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	u, _ := url.Parse(ts.srv.URL)
	s := &oauthTokens{
		tokenURL: ts.srv.URL + "/token", tokenHost: u.Host, clientID: "moat", client: ts.srv.Client(),
		secret: func(context.Context, string) ([]byte, error) { return []byte(oauthClientSecret), nil },
		denied: func(_ string, err error) error { return err },
		now:    time.Now,
	}
	const callers = 8
	round := func(stale, want string, requestsAfter int) {
		t.Helper()
		gate := make(chan struct{})
		// Released on failure too, or the server's Close would wait for
		// the held answers.
		release := sync.OnceFunc(func() { close(gate) })
		t.Cleanup(release)
		ts.mu.Lock()
		ts.gate = gate
		ts.mu.Unlock()
		got := make(chan string, callers)
		for range callers {
			go func() {
				tok, err := s.token(context.Background(), stale)
				if err != nil {
					tok = err.Error()
				}
				got <- tok
			}()
		}
		// Every caller is waiting for the one request before it answers.
		for {
			s.mu.Lock()
			waiting := 0
			if s.inflight != nil {
				waiting = s.inflight.waiters
			}
			s.mu.Unlock()
			if waiting == callers {
				break
			}
			if n := ts.requests(); n > requestsAfter {
				t.Fatalf("%d token requests while %d callers wait, want %d", n, callers, requestsAfter)
			}
			time.Sleep(time.Millisecond)
		}
		release()
		for range callers {
			if tok := <-got; tok != want {
				t.Errorf("a caller got %q, want %q", tok, want)
			}
		}
	}
	round("", "tok-1", 1)
	if n := ts.requests(); n != 1 {
		t.Fatalf("%d token requests for %d callers, want 1", n, callers)
	}
	round("tok-1", "tok-2", 2)
	if n := ts.requests(); n != 2 {
		t.Fatalf("%d token requests after %d refusals of one token, want 2", n, callers)
	}
	// A caller refused with a token already replaced uses the new one.
	if tok, err := s.token(context.Background(), "tok-1"); err != nil || tok != "tok-2" {
		t.Errorf("token = %q, %v; want tok-2", tok, err)
	}
	if n := ts.requests(); n != 2 {
		t.Errorf("%d token requests, want still 2", n)
	}
}

// The client secret goes to the token endpoint only if the vault allows
// its host: otherwise the call fails as forbidden, without a retry, and
// the token endpoint hears nothing.
func TestOAuth2ClientSecretRefusedForUnboundTokenHost(t *testing.T) {
	t.Parallel()
	up, ts, c, v, ev := oauthSetup(t, TypeOpenAI, func(up, _ string) []string { return []string{up} })
	res := Resources{
		Vendors:    testVendors(),
		Connectors: []Connector{c},
		Models:     []Model{{Name: "chat", Chain: []ModelTarget{{Connector: "up", Model: "m"}}}},
	}
	g := newTestGateway(t, res, func(cfg *Config) { cfg.Secrets = v })
	_, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("hello")}})
	ge := wantCode(t, err, CodeForbidden)
	idpHost := hostOf(t, ts.srv.URL)
	if !strings.Contains(ge.Message, "idp-secret") || !strings.Contains(ge.Message, idpHost) || strings.Contains(ge.Message, oauthClientSecret) {
		t.Errorf("message = %q", ge.Message)
	}
	if n, m := ts.requests(), len(up.seen()); n != 0 || m != 0 {
		t.Errorf("token endpoint got %d requests and upstream %d, want none", n, m)
	}
	if acc := accessesFor(ev, idpHost); len(acc) != 1 || acc[0].Outcome != vault.OutcomeDenied {
		t.Errorf("token host accesses = %+v, want one denied (no retry)", acc)
	}
	alerted := false
	for _, e := range ev.Of(vault.KindBindingViolation) {
		alerted = alerted || e.Access.Host == idpHost
	}
	if !alerted {
		t.Error("no binding-violation alert for the token host")
	}
}

// A token endpoint's refusal fails the call with its error code and
// description, never the client secret or a token; an endpoint that is
// down is a failure the gateway may retry.
func TestOAuth2TokenEndpointErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		body     string
		code     string
		contains []string
		absent   []string
	}{
		{"invalid client", 401, `{"error":"invalid_client","error_description":"Client authentication failed"}`, CodeForbidden,
			[]string{"answered 401: invalid_client (Client authentication failed)"}, nil},
		{"description repeating the secret", 400, `{"error":"invalid_scope","error_description":"scope denied for ` + oauthClientSecret + `"}`, CodeForbidden,
			[]string{"invalid_scope", "[redacted]"}, nil},
		{"error in a 200", 200, `{"error":"access_denied","access_token":"tok-leak-canary"}`, CodeForbidden,
			[]string{"access_denied"}, []string{"tok-leak-canary"}},
		{"not a bearer token", 200, `{"access_token":"tok-leak-canary","token_type":"mac"}`, CodeForbidden,
			[]string{`token_type "mac" is not Bearer`}, []string{"tok-leak-canary"}},
		{"no token", 200, `{"token_type":"Bearer"}`, CodeForbidden, []string{"no usable access_token"}, nil},
		{"token with a line break", 200, `{"access_token":"tok\r\nX-Evil: 1"}`, CodeForbidden, []string{"no usable access_token"}, nil},
		{"not JSON", 400, `<html>` + oauthClientSecret + `</html>`, CodeForbidden, []string{"answered 400", "not an OAuth 2.0 error"}, nil},
		{"answer too large", 200, `{"access_token":"` + strings.Repeat("a", maxTokenResponse) + `"}`, CodeForbidden, []string{"larger than 65536 bytes"}, nil},
		{"endpoint down", 503, `{"error":"temporarily_unavailable"}`, CodeUnavailable, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up, ts, c, v, _ := oauthSetup(t, TypeOpenAI, nil)
			ts.answer = func(_ int, w http.ResponseWriter) bool {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
				return true
			}
			res := Resources{
				Vendors:    testVendors(),
				Connectors: []Connector{c},
				Models:     []Model{{Name: "chat", Chain: []ModelTarget{{Connector: "up", Model: "m"}}}},
			}
			g := newTestGateway(t, res, func(cfg *Config) { cfg.Secrets = v })
			_, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("hello")}})
			ge := wantCode(t, err, tc.code)
			for _, s := range tc.contains {
				if !strings.Contains(ge.Message, s) {
					t.Errorf("message %q does not contain %q", ge.Message, s)
				}
			}
			for _, s := range append(tc.absent, oauthClientSecret) {
				if strings.Contains(ge.Message, s) || strings.Contains(fmt.Sprint(ge.Err), s) {
					t.Errorf("the error repeats %q", s)
				}
			}
			if n := len(up.seen()); n != 0 {
				t.Errorf("upstream got %d requests without a token", n)
			}
			if tc.code == CodeForbidden && ts.requests() != 1 {
				t.Errorf("%d token requests, want 1: a refusal is not retried", ts.requests())
			}
		})
	}
}

// A token endpoint that redirects is not followed: the client secret goes
// to the token URL only.
func TestOAuth2TokenRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	elsewhere := newTokenServer(t)
	up, ts, c, v, _ := oauthSetup(t, TypeHTTP, nil)
	ts.answer = func(_ int, w http.ResponseWriter) bool {
		w.Header().Set("Location", elsewhere.srv.URL+"/token")
		w.WriteHeader(http.StatusTemporaryRedirect)
		return true
	}
	cat, err := buildOne(t, c, CatalogOptions{Secrets: v})
	if err != nil {
		t.Fatal(err)
	}
	err = callUp(t, cat)
	var denied *CredentialDeniedError
	if !errors.As(err, &denied) || !strings.Contains(err.Error(), "redirects are not followed") {
		t.Fatalf("err = %v", err)
	}
	if n, m := elsewhere.requests(), len(up.seen()); n != 0 || m != 0 {
		t.Errorf("redirect target got %d requests, upstream %d", n, m)
	}
}

// An oauth2 credential from an environment variable works the same, with
// no vault.
func TestOAuth2FromEnvironment(t *testing.T) {
	t.Parallel()
	up, ts := newHeaderUpstream(t), newTokenServer(t)
	cred := oauthCredential(ts.srv.URL)
	cred.Secret, cred.Env = "", "IDP_SECRET"
	cat, err := buildOne(t, upstreamConnector(TypeAnthropic, up.srv.URL, cred), CatalogOptions{Getenv: fakeEnv(map[string]string{"IDP_SECRET": oauthClientSecret})})
	if err != nil {
		t.Fatal(err)
	}
	if err := callUp(t, cat); err != nil {
		t.Fatal(err)
	}
	if ts.requests() != 1 || ts.pass[0] != oauthClientSecret {
		t.Errorf("token requests %d", ts.requests())
	}
	if got := up.seen()[0].Get("Authorization"); got != "Bearer tok-1" {
		t.Errorf("Authorization = %q", got)
	}
}

func TestParseTokenResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		body     string
		token    string
		lifetime time.Duration
		err      string
	}{
		{"standard", 200, `{"access_token":"abc","token_type":"Bearer","expires_in":3600}`, "abc", time.Hour, ""},
		{"lower-case type", 200, `{"access_token":"abc","token_type":"bearer","expires_in":60}`, "abc", time.Minute, ""},
		{"expires_in as a string", 200, `{"access_token":"abc","expires_in":"120"}`, "abc", 2 * time.Minute, ""},
		{"no expires_in", 200, `{"access_token":"abc"}`, "abc", defaultTokenLifetime, ""},
		{"expires_in capped", 200, `{"access_token":"abc","expires_in":1e12}`, "abc", maxTokenLifetime, ""},
		{"expired at once", 200, `{"access_token":"abc","expires_in":-5}`, "abc", 0, ""},
		{"expires_in not a number", 200, `{"access_token":"abc","expires_in":"soon"}`, "", 0, "expires_in is not a number"},
		{"error", 400, `{"error":"invalid_grant","error_description":"nope"}`, "", 0, "answered 400: invalid_grant (nope)"},
		{"error with control characters", 400, "{\"error\":\"bad\\u0000\\n\",\"error_description\":\"line\\r\\nbreak\"}", "", 0, "answered 400: bad (linebreak)"},
		{"status without a body", 500, ``, "", 0, "answered 500: the answer is not an OAuth 2.0 error"},
		{"array", 200, `[]`, "", 0, "not a JSON object"},
		{"space in the token", 200, `{"access_token":"a b"}`, "", 0, "no usable access_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, lifetime, err := parseTokenResponse(tc.status, []byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || tok != tc.token || lifetime != tc.lifetime {
				t.Fatalf("= %q, %v, %v; want %q, %v", tok, lifetime, err, tc.token, tc.lifetime)
			}
		})
	}
}

func FuzzParseTokenResponse(f *testing.F) {
	f.Add(200, []byte(`{"access_token":"abc","token_type":"Bearer","expires_in":3600}`))
	f.Add(200, []byte(`{"access_token":"abc","expires_in":"3600"}`))
	f.Add(400, []byte(`{"error":"invalid_client","error_description":"bad"}`))
	f.Add(200, []byte(`{"error":"x","access_token":"leak-me-not"}`))
	f.Add(503, []byte(`<html>`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		tok, lifetime, err := parseTokenResponse(status, body)
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *TokenError", err)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			var a tokenAnswer
			if json.Unmarshal(body, &a) == nil && len(a.AccessToken) >= 8 &&
				!strings.Contains(a.Error+a.ErrorDescription+a.TokenType, a.AccessToken) && strings.Contains(err.Error(), a.AccessToken) {
				t.Fatalf("error %q repeats the access token", err)
			}
			return
		}
		if !validAccessToken(tok) || lifetime < 0 || lifetime > maxTokenLifetime {
			t.Fatalf("accepted token %q with lifetime %v", tok, lifetime)
		}
		if status < 200 || status > 299 {
			t.Fatalf("accepted a token from status %d", status)
		}
	})
}
