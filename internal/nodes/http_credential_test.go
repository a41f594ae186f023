package nodes

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moatproject/moat/internal/vault"
	"github.com/moatproject/moat/internal/vault/vaulttest"
	"github.com/moatproject/moat/internal/workflow"
)

const helpdeskToken = "hd-canary-7Qx2Lm9Vb4Tz"

// newCredentialVault is a vault on a fresh SQLite store.
func newCredentialVault(t *testing.T) (*vault.Vault, *vaulttest.Events) {
	t.Helper()
	return vaulttest.New(t)
}

// bindSecret stores value as env/name for http.request steps sending to
// hosts.
func bindSecret(t *testing.T, v *vault.Vault, env, name, value string, hosts ...string) {
	t.Helper()
	opts := vault.Options{Bindings: vault.Bindings{Connectors: []string{"http.request"}, Hosts: hosts}}
	if _, err := v.Set(context.Background(), env, name, []byte(value), opts); err != nil {
		t.Fatal(err)
	}
}

// echoServer answers every request with the credential headers it got, in
// its body and in a header, as a debugging endpoint would.
type echoServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []http.Header
}

func newEchoServer(t *testing.T, redirect func(r *http.Request) string) *echoServer {
	t.Helper()
	e := &echoServer{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.got = append(e.got, r.Header.Clone())
		e.mu.Unlock()
		if redirect != nil {
			if to := redirect(r); to != "" {
				http.Redirect(w, r, to, http.StatusTemporaryRedirect)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", r.Header.Get("Authorization")+r.Header.Get("X-Api-Key"))
		_ = json.NewEncoder(w).Encode(map[string]any{"authorization": r.Header.Get("Authorization"), "apiKey": r.Header.Get("X-Api-Key")})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *echoServer) requests() []http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

func (e *echoServer) host(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// runCredentialStep loads a workflow whose one step calls input.url with
// credential, renders it and executes it as the engine does.
func runCredentialStep(t *testing.T, env *Env, credential, rawURL string) (Result, error) {
	t.Helper()
	src := "apiVersion: moat/v1\nkind: Workflow\nname: tickets\nproject: support\nsteps:\n" +
		"  - id: notify\n    uses: http.request\n    with:\n      method: POST\n      url: \"{{ input.url }}\"\n      body: {subject: hello}\n" +
		"      credential: " + credential + "\n"
	plan, err := workflow.Load("tickets.yaml", []byte(src), Builtins())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	ps := plan.Step("notify")
	vars := workflow.Vars{"input": map[string]any{"url": rawURL}, "steps": map[string]any{}}
	with, err := plan.RenderWith(ps, vars)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	if env.HTTP == nil {
		env.HTTP = NewHTTPClient(EgressPolicy{AllowPrivate: true})
	}
	return HTTPRequest{}.Execute(context.Background(), &Call{Plan: plan, Step: ps, With: with, Vars: vars, RunID: "run_1", Attempt: 1, IdempotencyKey: "k1", Env: env})
}

// assertNoValue fails when the step's output or error holds the value, in
// clear, base64 or hex.
func assertNoValue(t *testing.T, res Result, err error, values ...string) {
	t.Helper()
	out, merr := json.Marshal(res.Output)
	if merr != nil {
		t.Fatal(merr)
	}
	text := string(out)
	if err != nil {
		text += "\n" + err.Error()
	}
	for _, v := range values {
		for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v)), hex.EncodeToString([]byte(v))} {
			if strings.Contains(text, form) {
				t.Errorf("the step's output or error holds the credential (%q): %s", form, text)
			}
		}
	}
}

// Each scheme reaches a host the secret is bound to in its header; the
// access is checked and recorded for this connector, host, run and
// workflow; and an answer echoing the value does not put it in the output.
func TestHTTPCredentialSchemes(t *testing.T) {
	t.Parallel()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("svc-moat:"+helpdeskToken))
	for _, tc := range []struct {
		name, credential, header, want string
	}{
		{"bearer by default", "{secret: helpdesk-token}", "Authorization", "Bearer " + helpdeskToken},
		{"bearer", "{secret: helpdesk-token, scheme: bearer}", "Authorization", "Bearer " + helpdeskToken},
		{"basic", "{secret: helpdesk-token, scheme: basic, username: svc-moat}", "Authorization", basic},
		{"header", "{secret: helpdesk-token, scheme: header, header: X-Api-Key}", "X-Api-Key", helpdeskToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newEchoServer(t, nil)
			v, log := newCredentialVault(t)
			bindSecret(t, v, "prod", "helpdesk-token", helpdeskToken, "127.0.0.1")
			res, err := runCredentialStep(t, &Env{Secrets: v, Environment: "prod"}, tc.credential, srv.srv.URL+"/api/tickets")
			if err != nil {
				t.Fatal(err)
			}
			got := srv.requests()
			if len(got) != 1 || got[0].Get(tc.header) != tc.want {
				t.Fatalf("the server got %v, want %s: %s", got, tc.header, tc.want)
			}
			if out := res.Output.(map[string]any); out["status"] != int64(200) {
				t.Errorf("output = %v", out)
			}
			assertNoValue(t, res, err, helpdeskToken, tc.want)
			acc := log.Of(vault.KindAccess)
			want := vault.Access{RunID: "run_1", Workflow: "support/tickets", Environment: "prod", Connector: "http.request", Host: srv.host(t)}
			if len(acc) != 1 || acc[0].Outcome != vault.OutcomeOK || acc[0].Access != want || acc[0].Name != "helpdesk-token" {
				t.Errorf("accesses = %+v, want one ok for %+v", acc, want)
			}
		})
	}
}

// A host the secret is not bound to gets nothing: the vault refuses before
// the request is sent, raises a binding alert, and the step fails without
// a retry, naming the secret and host but not the value.
func TestHTTPCredentialRefusedForUnboundHost(t *testing.T) {
	t.Parallel()
	bound, elsewhere := newEchoServer(t, nil), newEchoServer(t, nil)
	v, log := newCredentialVault(t)
	bindSecret(t, v, "prod", "helpdesk-token", helpdeskToken, bound.host(t))
	res, err := runCredentialStep(t, &Env{Secrets: v, Environment: "prod"}, "{secret: helpdesk-token}", elsewhere.srv.URL+"/api/tickets")
	var denied *CredentialError
	if !errors.As(err, &denied) || !IsPermanent(err) || !errors.Is(err, vault.ErrNotBound) {
		t.Fatalf("err = %v, want a permanent credential refusal (not bound)", err)
	}
	if !strings.Contains(err.Error(), "helpdesk-token") || !strings.Contains(err.Error(), elsewhere.host(t)) {
		t.Errorf("the error does not name the secret and host: %v", err)
	}
	assertNoValue(t, res, err, helpdeskToken)
	if n := len(elsewhere.requests()); n != 0 {
		t.Errorf("the unbound host got %d requests", n)
	}
	if alerts := log.Of(vault.KindBindingViolation); len(alerts) != 1 || alerts[0].Access.Host != elsewhere.host(t) {
		t.Errorf("binding alerts = %+v, want one for %s", alerts, elsewhere.host(t))
	}
}

// A redirect is a new request, which carries the credential only to a host
// the secret is bound to: to any other, the step fails and nothing is sent
// there, whichever header the credential goes in (the client itself would
// forward a custom header such as X-Api-Key).
func TestHTTPCredentialNotCarriedAcrossRedirect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, credential, header, want string
	}{
		{"bearer", "{secret: helpdesk-token}", "Authorization", "Bearer " + helpdeskToken},
		{"header", "{secret: helpdesk-token, scheme: header, header: X-Api-Key}", "X-Api-Key", helpdeskToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target := newEchoServer(t, nil)
			origin := newEchoServer(t, func(r *http.Request) string {
				if r.URL.Path == "/elsewhere" {
					return target.srv.URL + "/collect"
				}
				if r.URL.Path == "/moved" {
					return "/api/tickets"
				}
				return ""
			})
			v, _ := newCredentialVault(t)
			// Bound to the origin's host and port only: the target listens
			// on the same address, another port.
			bindSecret(t, v, "prod", "helpdesk-token", helpdeskToken, origin.host(t))
			env := &Env{Secrets: v, Environment: "prod"}

			res, err := runCredentialStep(t, env, tc.credential, origin.srv.URL+"/elsewhere")
			var denied *CredentialError
			if !errors.As(err, &denied) || !IsPermanent(err) || denied.Host != target.host(t) {
				t.Fatalf("err = %v, want a permanent refusal for %s", err, target.host(t))
			}
			assertNoValue(t, res, err, helpdeskToken)
			if n := len(target.requests()); n != 0 {
				t.Errorf("the redirect's target got %d requests", n)
			}

			// Within the bound host a redirect is followed, and each hop
			// gets the credential from the vault again.
			if _, err := runCredentialStep(t, env, tc.credential, origin.srv.URL+"/moved"); err != nil {
				t.Fatal(err)
			}
			got := origin.requests()
			if len(got) != 3 || got[1].Get(tc.header) != tc.want || got[2].Get(tc.header) != tc.want {
				t.Errorf("origin got %d requests, headers %v", len(got), got)
			}
		})
	}
}

// A run resolves only its own environment's secrets: a prod secret does
// not exist for a staging server, whatever its bindings.
func TestHTTPCredentialOtherEnvironment(t *testing.T) {
	t.Parallel()
	srv := newEchoServer(t, nil)
	v, log := newCredentialVault(t)
	bindSecret(t, v, "prod", "helpdesk-token", helpdeskToken, srv.host(t))
	res, err := runCredentialStep(t, &Env{Secrets: v, Environment: "staging"}, "{secret: helpdesk-token}", srv.srv.URL+"/api/tickets")
	if !errors.Is(err, vault.ErrNotFound) || !IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent not-found", err)
	}
	assertNoValue(t, res, err, helpdeskToken)
	if n := len(srv.requests()); n != 0 {
		t.Errorf("the server got %d requests", n)
	}
	acc := log.Of(vault.KindAccess)
	if len(acc) != 1 || acc[0].Environment != "staging" || acc[0].Outcome == vault.OutcomeOK {
		t.Errorf("accesses = %+v, want one refused in staging", acc)
	}
}

// A sealed vault, or a server without one, fails the step at once with an
// error saying so, and sends nothing.
func TestHTTPCredentialUnavailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		secrets func(v *vault.Vault) Secrets
		want    string
	}{
		{"sealed", func(v *vault.Vault) Secrets { v.Seal(); return v }, "sealed"},
		{"no vault", func(*vault.Vault) Secrets { return nil }, "this server has no vault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newEchoServer(t, nil)
			v, _ := newCredentialVault(t)
			bindSecret(t, v, "prod", "helpdesk-token", helpdeskToken, srv.host(t))
			res, err := runCredentialStep(t, &Env{Secrets: tc.secrets(v), Environment: "prod"}, "{secret: helpdesk-token}", srv.srv.URL+"/api/tickets")
			if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "helpdesk-token") {
				t.Fatalf("err = %v, want a permanent error naming the secret and saying %q", err, tc.want)
			}
			if tc.name == "sealed" && !errors.Is(err, vault.ErrSealed) {
				t.Errorf("err = %v, want vault.ErrSealed", err)
			}
			assertNoValue(t, res, err, helpdeskToken)
			if n := len(srv.requests()); n != 0 {
				t.Errorf("the server got %d requests", n)
			}
		})
	}
}

// A value that would break the header, and plain http to another machine,
// are refused before anything is sent; the second without even asking the
// vault.
func TestHTTPCredentialRefusedBeforeSending(t *testing.T) {
	t.Parallel()
	srv := newEchoServer(t, nil)
	v, log := newCredentialVault(t)
	bindSecret(t, v, "prod", "broken", helpdeskToken+"\r\nX-Injected: 1", srv.host(t))
	bindSecret(t, v, "prod", "helpdesk-token", helpdeskToken, "helpdesk.example.com")
	env := &Env{Secrets: v, Environment: "prod"}

	res, err := runCredentialStep(t, env, "{secret: broken}", srv.srv.URL+"/api/tickets")
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "control character") {
		t.Fatalf("err = %v, want a refusal of the value", err)
	}
	assertNoValue(t, res, err, helpdeskToken)
	if n := len(srv.requests()); n != 0 {
		t.Errorf("the server got %d requests", n)
	}

	before := len(log.Of(vault.KindAccess))
	res, err = runCredentialStep(t, env, "{secret: helpdesk-token}", "http://helpdesk.example.com/api/tickets")
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "https only") {
		t.Fatalf("err = %v, want a refusal of plain http", err)
	}
	assertNoValue(t, res, err, helpdeskToken)
	if after := len(log.Of(vault.KindAccess)); after != before {
		t.Errorf("the vault was asked for a plain-http request (%d accesses, want %d)", after, before)
	}
}

// The credential's settings are checked when a workflow is saved, at
// pointers under the step's with.credential.
func TestHTTPCredentialSettingsProblems(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, with string
		want       []string // pointer: message fragment
	}{
		{"fine", "{url: https://helpdesk.example.com/api, credential: {secret: helpdesk-token}}", nil},
		{"fine basic", "{url: https://helpdesk.example.com/api, credential: {secret: hd, scheme: basic, username: svc}}", nil},
		{"fine header", "{url: \"{{ input.url }}\", credential: {secret: hd, scheme: header, header: X-Api-Key}}", nil},
		{"unknown scheme", "{url: https://h.example, credential: {secret: hd, scheme: digest}}",
			[]string{"/steps/0/with/credential/scheme: with.credential.scheme:"}},
		{"basic without username", "{url: https://h.example, credential: {secret: hd, scheme: basic}}",
			[]string{"/steps/0/with/credential/username: with.credential.username: is required with scheme basic"}},
		{"basic username with a colon", "{url: https://h.example, credential: {secret: hd, scheme: basic, username: \"a:b\"}}",
			[]string{"/steps/0/with/credential/username: with.credential.username: must be printable, without ':'"}},
		{"header without its name", "{url: https://h.example, credential: {secret: hd, scheme: header}}",
			[]string{"/steps/0/with/credential/header: with.credential.header: is required with scheme header"}},
		{"reserved header", "{url: https://h.example, credential: {secret: hd, scheme: header, header: Host}}",
			[]string{"/steps/0/with/credential/header: with.credential.header: Host cannot carry a credential"}},
		{"username without basic", "{url: https://h.example, credential: {secret: hd, username: svc}}",
			[]string{"/steps/0/with/credential/username: with.credential.username: only scheme basic"}},
		{"header name without header scheme", "{url: https://h.example, credential: {secret: hd, header: X-Api-Key}}",
			[]string{"/steps/0/with/credential/header: with.credential.header: only scheme header"}},
		{"no secret", "{url: https://h.example, credential: {scheme: bearer}}",
			[]string{`/steps/0/with/credential: with.credential: missing required field "secret"`}},
		{"templated secret", "{url: https://h.example, credential: {secret: \"{{ input.name }}\"}}",
			[]string{"/steps/0/with/credential/secret: with.credential.secret:"}},
		{"a value instead of a name", "{url: https://h.example, credential: {secret: hd, value: abc}}",
			[]string{`/steps/0/with/credential/value: with.credential: unknown field "value"`}},
		{"header set twice", "{url: https://h.example, headers: {authorization: \"Bearer {{ input.name }}\"}, credential: {secret: hd}}",
			[]string{"/steps/0/with/headers/authorization: with.headers.authorization: the credential sets Authorization"}},
		{"plain http", "{url: http://h.example/api, credential: {secret: hd}}",
			[]string{"/steps/0/with/url: with.url: a credential is sent over https only"}},
		{"plain http to loopback is fine", "{url: http://127.0.0.1:8080/api, credential: {secret: hd}}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := "apiVersion: moat/v1\nkind: Workflow\nname: t\ninput:\n  schema: {type: object, properties: {url: {type: string}, name: {type: string}}}\nsteps:\n  - id: a\n    uses: http.request\n    with: " + tc.with + "\n"
			_, err := workflow.Load("t.yaml", []byte(src), Builtins())
			var problems workflow.Problems
			if err != nil && !errors.As(err, &problems) {
				t.Fatalf("load: %v", err)
			}
			var got []string
			for _, p := range problems {
				got = append(got, p.Pointer+": "+p.Message)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %q, want it to start with %q", got[i], w)
				}
			}
		})
	}
}

// A literal credential stays refused, and the message says where it goes
// instead.
func TestHTTPRequestLiteralCredentialPointsAtVault(t *testing.T) {
	t.Parallel()
	src := "apiVersion: moat/v1\nkind: Workflow\nname: t\nsteps:\n  - id: a\n    uses: http.request\n" +
		"    with: {url: https://h.example, headers: {Authorization: \"Bearer abc\", X-Token: ghp_0123456789abcdefghij0123456789abcdef}}\n"
	_, err := workflow.Load("t.yaml", []byte(src), Builtins())
	var problems workflow.Problems
	if !errors.As(err, &problems) || len(problems) != 2 {
		t.Fatalf("load: %v, want two problems", err)
	}
	for _, p := range problems {
		if !strings.Contains(p.Message, "moat secret set") || !strings.Contains(p.Message, "credential: {secret: NAME}") {
			t.Errorf("%s: %q does not point at the vault", p.Pointer, p.Message)
		}
	}
}

// FuzzHTTPCredentialSetting: what the schema accepts when a workflow is
// saved is what a step accepts when it runs, so a stored definition can
// neither fail late nor slip past; and an accepted setting without
// problems sends a header a client can write.
func FuzzHTTPCredentialSetting(f *testing.F) {
	for _, seed := range []string{
		`{"secret":"helpdesk-token"}`,
		`{"secret":"hd","scheme":"basic","username":"svc"}`,
		`{"secret":"hd","scheme":"header","header":"X-Api-Key"}`,
		`{"secret":"hd","scheme":""}`,
		`{"secret":"hd","username":""}`,
		`{"secret":"hd","header":""}`,
		`{"secret":"1hd"}`,
		`{"secret":"hd","value":"x"}`,
		`{"secret":5}`,
		`["hd"]`,
		`{"secret":"hd","scheme":"basic","username":"a:b\u0000"}`,
		`{"secret":"hd","scheme":"header","header":"X Api"}`,
		`{"secret":"hd","scheme":"basic","username":"` + strings.Repeat("é", 200) + `"}`,
		`{"secret":"hd","scheme":"basic","username":"` + strings.Repeat("u", 257) + `"}`,
	} {
		f.Add([]byte(seed))
	}
	sch, err := workflow.CompileSchema(httpCredentialSchema())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := workflow.DecodeJSON(data)
		if err != nil {
			return
		}
		cred, readErr := readHTTPCredential(v)
		schemaErr := sch.Validate(v)
		if (readErr == nil) != (schemaErr == nil) {
			t.Fatalf("%s: run time says %v, the schema says %v", data, readErr, schemaErr)
		}
		if readErr != nil || len(cred.problems()) > 0 {
			return
		}
		name := cred.headerName()
		value := cred.headerValue([]byte("value"))
		if !validHeaderName(name) || !validHeaderValue([]byte(value)) || !vault.ValidSecretName(cred.Secret) {
			t.Fatalf("%s: accepted, but sends %q: %q for secret %q", data, name, value, cred.Secret)
		}
	})
}
