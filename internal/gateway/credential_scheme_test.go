package gateway

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/moatproject/moat/internal/vault"
	"github.com/moatproject/moat/internal/vault/vaulttest"
)

// testSecret is a dev secret with its bindings.
type testSecret struct {
	name, value string
	connectors  []string
	hosts       []string
}

// newSecretsVault is a vault holding secrets, reporting to the returned
// events.
func newSecretsVault(t *testing.T, secrets ...testSecret) (*vault.Vault, *vaulttest.Events) {
	t.Helper()
	v, ev := vaulttest.New(t)
	for _, s := range secrets {
		opts := vault.Options{Bindings: vault.Bindings{Connectors: s.connectors, Hosts: s.hosts}}
		if _, err := v.Set(context.Background(), "dev", s.name, []byte(s.value), opts); err != nil {
			t.Fatal(err)
		}
	}
	return v, ev
}

// headerUpstream answers as an openai, anthropic or http connector's
// upstream expects, by path, and records every request's headers and body.
type headerUpstream struct {
	srv *httptest.Server

	mu      sync.Mutex
	headers []http.Header
	bodies  []string
	// reject, when it returns true, answers 401.
	reject func(r *http.Request) bool
}

func newHeaderUpstream(t *testing.T) *headerUpstream {
	t.Helper()
	u := &headerUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *headerUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.headers = append(u.headers, r.Header.Clone())
	u.bodies = append(u.bodies, string(body))
	reject := u.reject
	u.mu.Unlock()
	writeUpstreamAnswer(w, r, reject)
}

// writeUpstreamAnswer answers r as the upstream of its path would, or 401
// when reject says so.
func writeUpstreamAnswer(w http.ResponseWriter, r *http.Request, reject func(*http.Request) bool) {
	w.Header().Set("Content-Type", "application/json")
	if reject != nil && reject(r) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"message":"invalid token","type":"authentication_error"}}`)
		return
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/chat/completions"):
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	case strings.HasSuffix(r.URL.Path, "/messages"):
		_, _ = io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`)
	default:
		_, _ = io.WriteString(w, `{"a":"ok"}`)
	}
}

func (u *headerUpstream) seen() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers...)
}

func (u *headerUpstream) sentBodies() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.bodies...)
}

// upstreamConnector is a connector named "up" of typ to baseURL.
func upstreamConnector(typ, baseURL string, cred *Credential) Connector {
	c := Connector{Name: "up", Type: typ, Vendor: "in-house", Credential: cred}
	if typ == TypeHTTP {
		c.HTTP = &HTTPSettings{URL: baseURL + "/score", Response: "a"}
	} else {
		c.BaseURL = baseURL
	}
	return c
}

func buildOne(t *testing.T, c Connector, opts CatalogOptions) (*Catalog, error) {
	t.Helper()
	if opts.Environment == "" {
		opts.Environment = "dev"
	}
	return BuildCatalog(Resources{Vendors: testVendors(), Connectors: []Connector{c}}, opts)
}

func callUp(t *testing.T, cat *Catalog) error {
	t.Helper()
	conn, ok := cat.Connector("up")
	if !ok {
		t.Fatal("connector up is not in the catalog")
	}
	req := hello()
	req.Model = "m"
	_, err := chat(t, conn, req)
	return err
}

func basicValue(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

const schemeSecret = "pw-scheme-canary-7fQ2"

// Each scheme puts the credential where it belongs, for every connector
// type, from the vault and from an environment variable; no marker ever
// reaches the upstream, and the SDK's own key header is dropped when the
// scheme replaces it.
func TestCredentialSchemesSendTheRightHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		typ    string
		cred   Credential
		want   map[string]string // header: value; "" means absent
		vaults bool
	}{
		{"http basic from the vault", TypeHTTP, Credential{Secret: "svc", Scheme: SchemeBasic, Username: "moat-bot"},
			map[string]string{"Authorization": basicValue("moat-bot", schemeSecret)}, true},
		{"http basic from env", TypeHTTP, Credential{Env: "SVC_PASSWORD", Scheme: SchemeBasic, Username: "moat-bot"},
			map[string]string{"Authorization": basicValue("moat-bot", schemeSecret)}, false},
		{"http basic in a named header", TypeHTTP, Credential{Secret: "svc", Scheme: SchemeBasic, Username: "u", Header: "Proxy-Authorization"},
			map[string]string{"Proxy-Authorization": basicValue("u", schemeSecret), "Authorization": ""}, true},
		{"http header scheme from the vault", TypeHTTP, Credential{Secret: "svc", Scheme: SchemeHeader, Header: "X-Api-Key"},
			map[string]string{"X-Api-Key": schemeSecret, "Authorization": ""}, true},
		{"http header scheme from env", TypeHTTP, Credential{Env: "SVC_PASSWORD", Scheme: SchemeHeader, Header: "X-Api-Key"},
			map[string]string{"X-Api-Key": schemeSecret, "Authorization": ""}, false},
		{"http header by default for a custom header", TypeHTTP, Credential{Secret: "svc", Header: "X-Api-Key"},
			map[string]string{"X-Api-Key": schemeSecret}, true},
		{"http bearer in a custom header", TypeHTTP, Credential{Secret: "svc", Scheme: SchemeBearer, Header: "X-Auth"},
			map[string]string{"X-Auth": "Bearer " + schemeSecret, "Authorization": ""}, true},
		{"http bearer by default", TypeHTTP, Credential{Env: "SVC_PASSWORD"},
			map[string]string{"Authorization": "Bearer " + schemeSecret}, false},
		{"openai basic from the vault", TypeOpenAI, Credential{Secret: "svc", Scheme: SchemeBasic, Username: "moat-bot"},
			map[string]string{"Authorization": basicValue("moat-bot", schemeSecret)}, true},
		{"openai basic from env", TypeOpenAI, Credential{Env: "SVC_PASSWORD", Scheme: SchemeBasic, Username: "moat-bot"},
			map[string]string{"Authorization": basicValue("moat-bot", schemeSecret)}, false},
		{"openai bearer from the vault", TypeOpenAI, Credential{Secret: "svc"},
			map[string]string{"Authorization": "Bearer " + schemeSecret}, true},
		{"anthropic basic from the vault", TypeAnthropic, Credential{Secret: "svc", Scheme: SchemeBasic, Username: "moat-bot"},
			map[string]string{"Authorization": basicValue("moat-bot", schemeSecret), "X-Api-Key": ""}, true},
		{"anthropic bearer keeps x-api-key", TypeAnthropic, Credential{Secret: "svc"},
			map[string]string{"X-Api-Key": schemeSecret}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newHeaderUpstream(t)
			v, ev := newSecretsVault(t, testSecret{name: "svc", value: schemeSecret, connectors: []string{"up"}, hosts: []string{hostOf(t, up.srv.URL)}})
			cred := tc.cred
			if problems := CheckConnector(upstreamConnector(tc.typ, up.srv.URL, &cred)); len(problems) > 0 {
				t.Fatalf("the connector does not check: %v", problems)
			}
			cat, err := buildOne(t, upstreamConnector(tc.typ, up.srv.URL, &cred), CatalogOptions{
				Secrets: v, Getenv: fakeEnv(map[string]string{"SVC_PASSWORD": schemeSecret}),
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := callUp(t, cat); err != nil {
				t.Fatal(err)
			}
			seen := up.seen()
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d requests, want 1", len(seen))
			}
			for name, want := range tc.want {
				if got := seen[0].Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			for name, values := range seen[0] {
				for _, v := range values {
					if strings.Contains(v, "moat-vault-credential-") {
						t.Errorf("header %s carries the marker to the upstream", name)
					}
				}
			}
			wantAccesses := 0
			if tc.vaults {
				wantAccesses = 1
			}
			if acc := ev.Of(vault.KindAccess); len(acc) != wantAccesses || wantAccesses == 1 && acc[0].Outcome != vault.OutcomeOK {
				t.Errorf("vault accesses = %+v, want %d allowed", acc, wantAccesses)
			}
		})
	}
}

// A basic credential from the vault goes only to a host its secret is
// bound to: the check is the scheme's as much as bearer's.
func TestBasicCredentialRefusedForUnboundHost(t *testing.T) {
	t.Parallel()
	up := newHeaderUpstream(t)
	v, ev := newSecretsVault(t, testSecret{name: "svc", value: schemeSecret, connectors: []string{"up"}, hosts: []string{"api.example.com"}})
	cat, err := buildOne(t, upstreamConnector(TypeHTTP, up.srv.URL, &Credential{Secret: "svc", Scheme: SchemeBasic, Username: "u"}), CatalogOptions{Secrets: v})
	if err != nil {
		t.Fatal(err)
	}
	err = callUp(t, cat)
	if err == nil || !strings.Contains(err.Error(), "not given for "+hostOf(t, up.srv.URL)) || strings.Contains(err.Error(), schemeSecret) {
		t.Fatalf("err = %v, want the credential refused for the upstream's host", err)
	}
	if n := len(up.seen()); n != 0 {
		t.Errorf("upstream saw %d requests, want none", n)
	}
	if acc := ev.Of(vault.KindAccess); len(acc) != 1 || acc[0].Outcome != vault.OutcomeDenied {
		t.Errorf("vault accesses = %+v, want one denied", acc)
	}
}

// A missing environment variable fails a basic or oauth2 connector closed,
// as it does a bearer one.
func TestSchemeCredentialMissingEnv(t *testing.T) {
	t.Parallel()
	for _, cred := range []Credential{
		{Env: "SVC_PASSWORD", Scheme: SchemeBasic, Username: "u"},
		{Env: "SVC_PASSWORD", Scheme: SchemeOAuth2, TokenURL: "https://idp.example.com/token", ClientID: "moat"},
	} {
		t.Run(cred.Scheme, func(t *testing.T) {
			t.Parallel()
			up := newHeaderUpstream(t)
			cat, err := buildOne(t, upstreamConnector(TypeHTTP, up.srv.URL, &cred), CatalogOptions{Getenv: fakeEnv(nil)})
			if err != nil {
				t.Fatal(err)
			}
			err = callUp(t, cat)
			if err == nil || !strings.Contains(err.Error(), "environment variable SVC_PASSWORD is not set") {
				t.Fatalf("err = %v", err)
			}
			if n := len(up.seen()); n != 0 {
				t.Errorf("upstream saw %d requests", n)
			}
		})
	}
}

func TestCheckCredentialSchemes(t *testing.T) {
	t.Parallel()
	httpConn := func(cred Credential) Connector {
		return Connector{Name: "up", Type: TypeHTTP, Vendor: "in-house", Credential: &cred, HTTP: &HTTPSettings{URL: "https://api.example.com/score", Response: "a"}}
	}
	oauth := func(mutate func(c *Credential)) Connector {
		c := Credential{Secret: "idp", Scheme: SchemeOAuth2, TokenURL: "https://idp.example.com/oauth2/token", ClientID: "moat", Scopes: []string{"inference", "api:read"}, Audience: "https://api.example.com"}
		if mutate != nil {
			mutate(&c)
		}
		return httpConn(c)
	}
	openaiConn := func(cred Credential) Connector {
		c := validConnector()
		c.Environments = nil
		c.Credential = &cred
		return c
	}
	tests := []struct {
		name string
		c    Connector
		want []string
	}{
		{"bearer", httpConn(Credential{Secret: "k", Scheme: SchemeBearer}), nil},
		{"basic", httpConn(Credential{Secret: "k", Scheme: SchemeBasic, Username: "moat-bot"}), nil},
		{"header", httpConn(Credential{Env: "K", Scheme: SchemeHeader, Header: "X-Api-Key"}), nil},
		{"oauth2", oauth(nil), nil},
		{"oauth2 on openai", openaiConn(Credential{Env: "K", Scheme: SchemeOAuth2, TokenURL: "https://idp.example.com/token", ClientID: "moat"}), nil},
		{"oauth2 over http to loopback", oauth(func(c *Credential) { c.TokenURL = "http://127.0.0.1:8080/token" }), nil},
		{"oauth2 over http to localhost", oauth(func(c *Credential) { c.TokenURL = "http://localhost/token" }), nil},
		{"oauth2 over http to ::1", oauth(func(c *Credential) { c.TokenURL = "http://[::1]:9000/token" }), nil},
		{"unknown scheme", httpConn(Credential{Secret: "k", Scheme: "digest"}), []string{"credential.scheme: must be one of bearer, basic, header, oauth2"}},
		{"basic without username", httpConn(Credential{Secret: "k", Scheme: SchemeBasic}), []string{"credential.username: is required"}},
		{"basic username with colon", httpConn(Credential{Secret: "k", Scheme: SchemeBasic, Username: "a:b"}), []string{"credential.username: must be"}},
		{"basic username with newline", httpConn(Credential{Secret: "k", Scheme: SchemeBasic, Username: "a\nb"}), []string{"credential.username: must be"}},
		{"username without basic", httpConn(Credential{Secret: "k", Username: "a"}), []string{"credential.username: only scheme basic"}},
		{"header scheme without header", httpConn(Credential{Secret: "k", Scheme: SchemeHeader}), []string{"credential.header: is required with scheme header"}},
		{"header scheme on openai", openaiConn(Credential{Secret: "k", Scheme: SchemeHeader}), []string{"credential.scheme: only http connectors"}},
		{"oauth2 without token URL and client", oauth(func(c *Credential) { c.TokenURL, c.ClientID = "", "" }),
			[]string{"credential.tokenURL: is required", "credential.clientID: is required"}},
		{"oauth2 token URL over http", oauth(func(c *Credential) { c.TokenURL = "http://idp.example.com/token" }), []string{"credential.tokenURL: must be https"}},
		{"oauth2 token URL not absolute", oauth(func(c *Credential) { c.TokenURL = "/token" }), []string{"credential.tokenURL: must be an absolute https URL"}},
		{"oauth2 token URL with user", oauth(func(c *Credential) { c.TokenURL = "https://moat:pw@idp.example.com/token" }), []string{"credential.tokenURL: must not carry user information"}},
		{"oauth2 token URL with fragment", oauth(func(c *Credential) { c.TokenURL = "https://idp.example.com/token#x" }), []string{"credential.tokenURL: must not have a fragment"}},
		{"oauth2 token URL with secret query", oauth(func(c *Credential) { c.TokenURL = "https://idp.example.com/token?client_secret=x" }), []string{"credential.tokenURL: query parameter client_secret"}},
		{"oauth2 bad scope", oauth(func(c *Credential) { c.Scopes = []string{"ok", "two words", ""} }), []string{"credential.scopes[1]: ", "credential.scopes[2]: "}},
		{"oauth2 client ID with control", oauth(func(c *Credential) { c.ClientID = "a\x00" }), []string{"credential.clientID: must be"}},
		{"oauth2 audience with control", oauth(func(c *Credential) { c.Audience = "a\r\n" }), []string{"credential.audience: must be"}},
		{"oauth2 fields without oauth2", httpConn(Credential{Secret: "k", TokenURL: "https://idp.example.com/t", ClientID: "c", Scopes: []string{"s"}, Audience: "a"}),
			[]string{"credential.tokenURL: only scheme oauth2", "credential.clientID: only scheme oauth2", "credential.scopes: only scheme oauth2", "credential.audience: only scheme oauth2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantProblems(t, CheckConnector(tc.c), tc.want...)
		})
	}
	t.Run("override", func(t *testing.T) {
		t.Parallel()
		c := httpConn(Credential{Secret: "k"})
		c.Environments = map[string]ConnectorOverride{"prod": {Credential: &Credential{Secret: "k", Scheme: SchemeOAuth2, TokenURL: "https://idp.example.com/t"}}}
		wantProblems(t, CheckConnector(c), "environments.prod.credential.clientID: is required")
	})
	t.Run("a refused token URL is not repeated", func(t *testing.T) {
		t.Parallel()
		c := oauth(func(c *Credential) { c.TokenURL = "https://moat:hunter2-canary@idp.example.com/token" })
		for _, p := range CheckConnector(c) {
			if strings.Contains(p, "hunter2-canary") {
				t.Errorf("problem repeats the URL: %s", p)
			}
		}
	})
}

// The leak assertions above look for the markers' prefix: it must be the
// one markers have, and markers must differ.
func TestCredentialMarkerShape(t *testing.T) {
	t.Parallel()
	m := newCredentialMarker()
	if !strings.HasPrefix(m, "moat-vault-credential-") || len(m) != len("moat-vault-credential-")+32 || m == newCredentialMarker() {
		t.Fatalf("marker %q", m)
	}
}
