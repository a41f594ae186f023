package api

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/humatest"

	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

// secretCanary is a value planted through the API; no answer may hold it,
// in clear or encoded.
const secretCanary = "sk-api-canary-Rf83Lq0Zt6"

func newSecretsAPI(t *testing.T, source vault.KeySource) (humatest.TestAPI, *vault.Vault) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if source == nil {
		source = vault.KeyFile{Path: filepath.Join(dir, vault.KeyFileName), Create: true}
	}
	v, err := vault.Open(t.Context(), vault.Config{Store: st, Source: source, Hook: nopAccessHook{}})
	if err != nil {
		t.Fatal(err)
	}
	_, api := humatest.New(t, huma.DefaultConfig("Moat", "test"))
	h := &handlers{Deps: Deps{Store: st, Logger: slog.New(slog.DiscardHandler)}}
	h.registerSecrets(api, v)
	return api, v
}

func noCanary(t *testing.T, body string) {
	t.Helper()
	for _, enc := range []string{secretCanary, base64.StdEncoding.EncodeToString([]byte(secretCanary)), hex.EncodeToString([]byte(secretCanary))} {
		if strings.Contains(body, enc) {
			t.Fatalf("an answer holds the secret: %s", body)
		}
	}
}

func TestSecretsAPI(t *testing.T) {
	t.Parallel()
	api, v := newSecretsAPI(t, nil)
	type step struct {
		name         string
		method, path string
		body         any
		wantStatus   int
		wantContains []string
	}
	steps := []step{
		{"empty list", http.MethodGet, "/api/v1/secrets", nil, http.StatusOK, []string{`"secrets":[]`}},
		{"put creates", http.MethodPut, "/api/v1/secrets/prod/OPENAI_API_KEY",
			map[string]any{"value": secretCanary, "connectors": []string{"openai"}, "hosts": []string{"api.openai.com"}, "rotationPeriod": "2160h"},
			http.StatusCreated, []string{`"version":1`, `"connectors":["openai"]`, `"rotationPeriod":"2160h0m0s"`, `"rotation":"ok"`}},
		{"put again is a new version", http.MethodPut, "/api/v1/secrets/prod/OPENAI_API_KEY",
			map[string]any{"value": secretCanary + "-2", "connectors": []string{"openai"}},
			http.StatusOK, []string{`"version":2`}},
		{"get", http.MethodGet, "/api/v1/secrets/prod/OPENAI_API_KEY", nil, http.StatusOK, []string{`"name":"OPENAI_API_KEY"`, `"environment":"prod"`}},
		{"list of an environment", http.MethodGet, "/api/v1/secrets?environment=prod", nil, http.StatusOK, []string{`"OPENAI_API_KEY"`}},
		{"list of another", http.MethodGet, "/api/v1/secrets?environment=staging", nil, http.StatusOK, []string{`"secrets":[]`}},
		{"list due or overdue", http.MethodGet, "/api/v1/secrets?rotation=due,overdue", nil, http.StatusOK, []string{`"secrets":[]`}},
		{"list ok", http.MethodGet, "/api/v1/secrets?rotation=ok", nil, http.StatusOK, []string{`"OPENAI_API_KEY"`}},
		{"unknown environment", http.MethodPut, "/api/v1/secrets/qa/K", map[string]any{"value": secretCanary, "connectors": []string{"c"}},
			http.StatusUnprocessableEntity, []string{"unknown environment"}},
		{"no connector", http.MethodPut, "/api/v1/secrets/prod/K", map[string]any{"value": secretCanary},
			http.StatusUnprocessableEntity, []string{"at least one connector"}},
		{"no value", http.MethodPut, "/api/v1/secrets/prod/K", map[string]any{"connectors": []string{"c"}},
			http.StatusUnprocessableEntity, []string{"body.value"}},
		{"value pasted as a field name", http.MethodPut, "/api/v1/secrets/prod/K", map[string]any{secretCanary: "x", "value": "v", "connectors": []string{"c"}},
			http.StatusUnprocessableEntity, []string{"unknown field"}},
		{"value of the wrong type", http.MethodPut, "/api/v1/secrets/prod/K", strings.NewReader(`{"value":["` + secretCanary + `"],"connectors":["c"]}`),
			http.StatusUnprocessableEntity, []string{"where a string is expected"}},
		{"broken JSON", http.MethodPut, "/api/v1/secrets/prod/K", strings.NewReader(`{"value":"` + secretCanary + `",`),
			http.StatusUnprocessableEntity, []string{"unexpected end"}},
		{"bad rotation period", http.MethodPut, "/api/v1/secrets/prod/K", map[string]any{"value": secretCanary, "connectors": []string{"c"}, "rotationPeriod": "soon"},
			http.StatusUnprocessableEntity, []string{"body.rotationPeriod"}},
		{"vault state", http.MethodGet, "/api/v1/vault", nil, http.StatusOK, []string{`"sealed":false`, `"primaryTerm":1`, `"environments":["dev","staging","prod"]`}},
		{"retire in use", http.MethodPost, "/api/v1/vault/min-decryption-term", map[string]any{"term": 2}, http.StatusUnprocessableEntity, []string{"above the primary term"}},
	}
	run := func(s step) string {
		t.Helper()
		var res interface {
			Result() *http.Response
		}
		switch s.method {
		case http.MethodGet:
			res = api.Get(s.path)
		case http.MethodPut:
			res = api.Put(s.path, s.body)
		case http.MethodPost:
			if s.body == nil {
				res = api.Post(s.path)
			} else {
				res = api.Post(s.path, s.body)
			}
		case http.MethodDelete:
			res = api.Delete(s.path)
		}
		r := res.Result()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		body := b.String()
		if r.StatusCode != s.wantStatus {
			t.Fatalf("%s: status %d, want %d\n%s", s.name, r.StatusCode, s.wantStatus, body)
		}
		for _, want := range s.wantContains {
			if !strings.Contains(body, want) {
				t.Fatalf("%s: answer lacks %s\n%s", s.name, want, body)
			}
		}
		noCanary(t, body)
		return body
	}
	for _, s := range steps {
		run(s)
	}

	// Rotation: a new primary term, then a background rewrap.
	run(step{"rotate", http.MethodPost, "/api/v1/vault/rotate", nil, http.StatusOK, []string{`"primaryTerm":2`, `"rewrap":{`}})
	for i := 0; ; i++ {
		var view VaultView
		if err := json.Unmarshal([]byte(run(step{"poll", http.MethodGet, "/api/v1/vault", nil, http.StatusOK, nil})), &view); err != nil {
			t.Fatal(err)
		}
		if view.Rewrap != nil && !view.Rewrap.Running {
			if view.Rewrap.Error != "" || view.Rewrap.Rewrapped != 1 || view.Rewrap.Term != 2 {
				t.Fatalf("rewrap %+v", view.Rewrap)
			}
			break
		}
		if i > 10000 {
			t.Fatal("the rewrap never ended")
		}
	}
	run(step{"retire", http.MethodPost, "/api/v1/vault/min-decryption-term", map[string]any{"term": 2}, http.StatusOK, []string{`"minDecryptionTerm":2`}})

	// The value still resolves (through the vault, never the API).
	got, err := v.Resolve(t.Context(), vault.Access{Environment: "prod", Connector: "openai"}, "prod", "OPENAI_API_KEY")
	if err != nil || string(got) != secretCanary+"-2" {
		t.Fatalf("resolve after rotation: %v", err)
	}

	run(step{"seal", http.MethodPost, "/api/v1/vault/seal", nil, http.StatusOK, []string{`"sealed":true`}})
	run(step{"put while sealed", http.MethodPut, "/api/v1/secrets/prod/K", map[string]any{"value": secretCanary, "connectors": []string{"c"}},
		http.StatusServiceUnavailable, []string{"moat unseal"}})
	run(step{"list while sealed", http.MethodGet, "/api/v1/secrets", nil, http.StatusOK, []string{`"OPENAI_API_KEY"`}})
	run(step{"unseal", http.MethodPost, "/api/v1/vault/unseal", map[string]any{}, http.StatusOK, []string{`"sealed":false`}})

	run(step{"delete", http.MethodDelete, "/api/v1/secrets/prod/OPENAI_API_KEY", nil, http.StatusNoContent, nil})
	run(step{"get deleted", http.MethodGet, "/api/v1/secrets/prod/OPENAI_API_KEY", nil, http.StatusNotFound, nil})
	run(step{"delete again", http.MethodDelete, "/api/v1/secrets/prod/OPENAI_API_KEY", nil, http.StatusNotFound, nil})
}

func TestUnsealAPI(t *testing.T) {
	t.Parallel()
	api, v := newSecretsAPI(t, vault.Passphrase{Time: 1, MemoryKiB: 64, Threads: 1})
	if !v.Sealed() {
		t.Fatal("a passphrase vault opened unsealed")
	}
	status := func(res *httptest.ResponseRecorder) int { return res.Result().StatusCode }
	if got := status(api.Put("/api/v1/secrets/prod/K", map[string]any{"value": secretCanary, "connectors": []string{"c"}})); got != http.StatusServiceUnavailable {
		t.Fatalf("put while sealed: %d", got)
	}
	// A new vault is created only on purpose.
	if got := status(api.Post("/api/v1/vault/unseal", map[string]any{"passphrase": "correct horse battery staple"})); got != http.StatusConflict {
		t.Fatalf("unseal before init: %d", got)
	}
	if got := status(api.Post("/api/v1/vault/unseal", map[string]any{"passphrase": "correct horse battery staple", "init": true})); got != http.StatusOK {
		t.Fatalf("init: %d", got)
	}
	if got := status(api.Post("/api/v1/vault/unseal", map[string]any{"passphrase": "another horse battery staple", "init": true})); got != http.StatusConflict {
		t.Fatalf("second init: %d", got)
	}
	if got := status(api.Put("/api/v1/secrets/prod/K", map[string]any{"value": secretCanary, "connectors": []string{"c"}})); got != http.StatusCreated {
		t.Fatalf("put: %d", got)
	}
	api.Post("/api/v1/vault/seal")
	res := api.Post("/api/v1/vault/unseal", map[string]any{"passphrase": "wrong horse battery staple"})
	if got := status(res); got != http.StatusForbidden || strings.Contains(res.Body.String(), "horse") {
		t.Fatalf("wrong passphrase: %d %s", got, res.Body.String())
	}
	// A passphrase of the wrong type is not quoted back either.
	res = api.Post("/api/v1/vault/unseal", strings.NewReader(`{"passphrase":["wrong horse battery staple"]}`))
	if strings.Contains(res.Body.String(), "horse") {
		t.Fatalf("the answer quotes the passphrase: %s", res.Body.String())
	}
	res = api.Post("/api/v1/vault/unseal", map[string]any{"passphrase": "correct horse battery staple"})
	if got := status(res); got != http.StatusTooManyRequests {
		t.Fatalf("too soon: %d", got)
	}
	if !v.Sealed() {
		t.Fatal("unsealed while rate limited")
	}
}

// secretBodyError is every message decodeSecretBody may give; none quotes
// the body.
var secretBodyError = regexp.MustCompile(`^(syntax error at byte \d+|a (string|number|array|object|bool) where (an? [a-z ]+|true or false|another type) is expected|unexpected end of input|cannot decode|data after the JSON value|unknown field; the fields are value, connectors, hosts, models, rotationPeriod and blockWhenExpired)$`)

func FuzzDecodeSecretBody(f *testing.F) {
	for _, s := range []string{
		`{"value":"sk-1","connectors":["c"]}`, `{"value":12345678}`, `{"value":["x"]}`, `{"sk-123":"x"}`, `{"value":"x"} {}`,
		`{"value":"x",`, `[]`, `"x"`, `{"rotationPeriod":true}`, `{"blockWhenExpired":"yes"}`, `{"connectors":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var body putSecretBody
		err := decodeSecretBody(b, &body)
		if err != nil && !secretBodyError.MatchString(err.Error()) {
			t.Fatalf("message %q may quote the body", err)
		}
	})
}
