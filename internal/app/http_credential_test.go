package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/vault"
)

// In moat serve an http.request step authenticates with a secret of the
// server's environment, bound to connector http.request and the host: the
// bound host gets it, the access is in the audit log, and a step sending
// to another host fails at its first attempt with nothing sent.
func TestHTTPRequestCredentialFromTheVault(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const value = "hd-app-canary-5Rk8Wq3Zp1"
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Host+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t)
	cfg.Environment = "prod"
	cfg.AllowPrivateEgress = true
	a, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Engine.Stop(context.Background())
	opts := vault.Options{Bindings: vault.Bindings{Connectors: []string{"http.request"}, Hosts: []string{u.Host}}}
	if _, err := a.Vault.Set(ctx, "prod", "helpdesk-token", []byte(value), opts); err != nil {
		t.Fatal(err)
	}
	saved, err := a.Engine.SaveWorkflow(ctx, "notify.yaml", []byte(`apiVersion: moat/v1
kind: Workflow
name: notify
project: support
input:
  schema: {type: object, required: [url], properties: {url: {type: string}}}
steps:
  - id: post
    uses: http.request
    with:
      method: POST
      url: "{{ input.url }}"
      body: {subject: hello}
      credential: {secret: helpdesk-token}
`))
	if err != nil {
		t.Fatal(err)
	}
	run := func(target string) (store.Run, []store.Step) {
		t.Helper()
		r, err := a.Engine.StartRun(ctx, engine.StartRequest{WorkflowID: saved.Workflow.ID, Input: map[string]any{"url": target}})
		if err != nil {
			t.Fatal(err)
		}
		r, steps, err := a.Engine.WaitFor(ctx, r.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r, steps
	}

	ok, _ := run(srv.URL + "/api/tickets")
	if ok.Status != store.RunSucceeded {
		t.Fatalf("run %s, want succeeded", ok.Status)
	}
	// localhost resolves to the same server, under a host name the secret
	// is not bound to.
	elsewhere := "http://localhost:" + u.Port() + "/api/tickets"
	denied, steps := run(elsewhere)
	if denied.Status != store.RunFailed || len(steps) != 1 || steps[0].Attempts != 1 || !strings.Contains(steps[0].Error, "not bound") || strings.Contains(steps[0].Error, value) {
		t.Fatalf("run %s, steps %+v: want failed at the first attempt, not bound", denied.Status, steps)
	}
	mu.Lock()
	if len(got) != 1 || got[0] != u.Host+" Bearer "+value {
		t.Errorf("the server got %q, want one request to %s with the token", got, u.Host)
	}
	mu.Unlock()

	if err := a.Audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := a.Store.ListAudit(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, r := range recs {
		if strings.Contains(string(r.Details), value) {
			t.Errorf("audit record %d holds the value", r.Seq)
		}
		if r.Action != vault.KindAccess {
			continue
		}
		var d struct {
			Access vault.Access `json:"access"`
		}
		if err := json.Unmarshal(r.Details, &d); err != nil || d.Access.Connector != "http.request" || d.Access.Workflow != "support/notify" || d.Access.Environment != "prod" {
			t.Errorf("record %d details: %s", r.Seq, r.Details)
		}
		outcomes = append(outcomes, r.Outcome+" "+d.Access.Host)
	}
	if want := "ok " + u.Host + ",denied localhost:" + u.Port(); strings.Join(outcomes, ",") != want {
		t.Errorf("secret accesses = %v, want %s", outcomes, want)
	}
}
