package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/moatproject/moat/internal/vault"
	"github.com/moatproject/moat/internal/vault/vaulttest"
)

const vaultKeyCanary = "sk-vault-canary-Qm83Lx0Vb2"

// newTestVault is a vault holding dev/openai-key, bound to the openai
// connector and to hosts.
func newTestVault(t *testing.T, hosts ...string) (*vault.Vault, *vaulttest.Events) {
	t.Helper()
	v, ev := vaulttest.New(t)
	opts := vault.Options{Bindings: vault.Bindings{Connectors: []string{"openai"}, Hosts: hosts}}
	if _, err := v.Set(context.Background(), "dev", "openai-key", []byte(vaultKeyCanary), opts); err != nil {
		t.Fatal(err)
	}
	return v, ev
}

func vaultResources(baseURL string) Resources {
	res := upstreamResources(baseURL)
	res.Connectors[0].Credential = &Credential{Secret: "openai-key"}
	return res
}

func hostOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// A connector naming a vault secret sends its value, as its SDK sends a
// key, to a host the secret is bound to; every use is an access the vault
// checked and reported, for this connector, host, model and run. A
// streamed call is no different.
func TestVaultCredentialSentToBoundHost(t *testing.T) {
	t.Parallel()
	t.Run("chat", func(t *testing.T) {
		testVaultCredentialSentToBoundHost(t, func(g *testGateway, req Request) error {
			_, err := g.Chat(context.Background(), req)
			return err
		})
	})
	t.Run("stream", func(t *testing.T) {
		testVaultCredentialSentToBoundHost(t, func(g *testGateway, req Request) error {
			_, err := g.ChatStream(context.Background(), req, func(string) error { return nil })
			return err
		})
	})
}

func testVaultCredentialSentToBoundHost(t *testing.T, call func(*testGateway, Request) error) {
	t.Parallel()
	up := newFakeUpstream(t)
	var mu sync.Mutex
	var auth []string
	up.fault = func(_ int, _ http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		return false
	}
	v, ev := vaulttest.New(t)
	// Bound to the model too: a call that does not say which model it is
	// for does not get the value.
	opts := vault.Options{Bindings: vault.Bindings{Connectors: []string{"openai"}, Hosts: []string{hostOf(t, up.srv.URL)}, Models: []string{"gpt-test"}}}
	if _, err := v.Set(context.Background(), "dev", "openai-key", []byte(vaultKeyCanary), opts); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, vaultResources(up.srv.URL), func(c *Config) { c.Secrets = v })
	id := Identity{Kind: "run", ID: "run_1", Run: "run_1", Project: "support", Workflow: "triage", Step: "reply"}
	if err := call(g, Request{Identity: id, Model: "chat", Messages: []Message{userMsg("hello")}}); err != nil {
		t.Fatal(err)
	}
	if len(auth) != 1 || auth[0] != "Bearer "+vaultKeyCanary {
		t.Fatalf("upstream saw Authorization %q", auth)
	}
	acc := ev.Of(vault.KindAccess)
	if len(acc) != 1 {
		t.Fatalf("%d accesses, want 1", len(acc))
	}
	want := vault.Access{RunID: "run_1", Workflow: "support/triage", Environment: "dev", Connector: "openai", Host: hostOf(t, up.srv.URL), Model: "gpt-test"}
	if a := acc[0]; a.Outcome != vault.OutcomeOK || a.Access != want {
		t.Errorf("access = %+v, want %+v ok", a, want)
	}
}

// The value never goes to a host the secret is not bound to, even when the
// connector points there. The call fails as forbidden, naming the
// connector, secret and host, not the value, and nothing is sent.
func TestVaultCredentialRefusedElsewhere(t *testing.T) {
	t.Parallel()
	bound, elsewhere := newFakeUpstream(t), newFakeUpstream(t)
	v, ev := newTestVault(t, hostOf(t, bound.srv.URL))
	g := newTestGateway(t, vaultResources(elsewhere.srv.URL), func(c *Config) { c.Secrets = v })
	_, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("hello")}})
	ge := wantCode(t, err, CodeForbidden)
	if !strings.Contains(ge.Message, "openai-key") || !strings.Contains(ge.Message, hostOf(t, elsewhere.srv.URL)) || strings.Contains(ge.Message, vaultKeyCanary) {
		t.Errorf("message = %q", ge.Message)
	}
	if n := len(elsewhere.requests()); n != 0 {
		t.Errorf("the unbound host got %d requests", n)
	}
	acc := ev.Of(vault.KindAccess)
	if len(acc) != 1 || acc[0].Outcome != vault.OutcomeDenied {
		t.Errorf("accesses = %+v, want one denied (no retry)", acc)
	}
}

// A redirect from the bound host to another is a new request there, which
// gets the value only if the binding allows that host too. (The openai SDK
// refuses cross-origin redirects itself; an http connector follows them.)
func TestVaultCredentialNotCarriedAcrossRedirect(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Api-Key"))
		mu.Unlock()
		_, _ = w.Write([]byte(`{"a":"ok"}`))
	}))
	t.Cleanup(elsewhere.Close)
	bound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/score", http.StatusFound)
	}))
	t.Cleanup(bound.Close)
	v, ev := newTestVault(t, hostOf(t, bound.URL))
	res := Resources{
		Vendors: testVendors(),
		Connectors: []Connector{{
			Name: "openai", Type: TypeHTTP, Vendor: "in-house", Credential: &Credential{Secret: "openai-key", Header: "X-Api-Key"},
			HTTP: &HTTPSettings{URL: bound.URL, Response: "a"},
		}},
	}
	cat, err := BuildCatalog(res, CatalogOptions{Environment: "dev", Secrets: v})
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := cat.Connector("openai")
	if _, err := chat(t, conn, hello()); err == nil {
		t.Fatal("the redirected call succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 0 {
		t.Errorf("the redirect target was reached (X-Api-Key %q)", seen)
	}
	acc := ev.Of(vault.KindAccess)
	if len(acc) != 2 || acc[0].Outcome != vault.OutcomeOK || acc[1].Outcome != vault.OutcomeDenied || acc[1].Access.Host != hostOf(t, elsewhere.URL) {
		t.Errorf("accesses = %+v, want the bound host allowed, then the redirect target denied", acc)
	}
}

// Without a vault, a connector naming a secret fails closed at each call
// and says why.
func TestVaultCredentialWithoutVault(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t)
	g := newTestGateway(t, vaultResources(up.srv.URL), nil)
	_, err := g.Chat(context.Background(), Request{Identity: keyIdentity(), Model: "chat", Messages: []Message{userMsg("hello")}})
	ge := wantCode(t, err, CodeRejected)
	if !strings.Contains(ge.Message, "vault secret openai-key (this server has no vault)") {
		t.Errorf("message = %q", ge.Message)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("%d upstream requests, want none", n)
	}
}
