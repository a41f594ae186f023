package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/app"
	"github.com/moatproject/moat/internal/config"
	"github.com/moatproject/moat/internal/gateway"
)

func testConfig(t *testing.T) config.Config {
	c := config.Default()
	c.DataDir = t.TempDir()
	c.DatabaseURL = ""
	return c
}

func TestBootstrapTokenIsCreatedOnceAndWorks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig(t)
	a, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	token, err := a.Bootstrap(ctx)
	if err != nil || !strings.HasPrefix(token, "moat_") {
		t.Fatalf("token %q, err %v", token, err)
	}
	info, err := os.Stat(cfg.TokenPath())
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", info, err)
	}
	b, _ := os.ReadFile(cfg.TokenPath())
	if strings.TrimSpace(string(b)) != token {
		t.Fatal("token file does not hold the token")
	}
	again, err := a.Bootstrap(ctx)
	if err != nil || again != "" {
		t.Fatalf("second bootstrap gave %q, %v; want nothing", again, err)
	}

	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Engine.Stop(ctx)
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"moat_wrong", http.StatusUnauthorized}, {token, http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/projects", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("token %q: status %d, want %d", tc.token, resp.StatusCode, tc.want)
		}
	}
}

func TestOneProcessPerEmbeddedDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig(t)
	a, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "another moat process") {
		t.Fatalf("second open: %v", err)
	}
	a.Close()
	b, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	b.Close()
}

func TestReadyzFailsWhenTheDatabaseIsGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := app.Open(ctx, testConfig(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	get := func() int {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != http.StatusServiceUnavailable {
		t.Fatalf("before start: %d, want 503", got)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get(); got != http.StatusOK {
		t.Fatalf("after start: %d", got)
	}
	a.Engine.Stop(ctx)
	a.Close()
	if got := get(); got != http.StatusServiceUnavailable {
		t.Fatalf("database closed: %d, want 503", got)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mutate func(*config.Config)
		want   string
	}{
		{func(c *config.Config) { c.Addr = "nonsense" }, "--addr"},
		{func(c *config.Config) { c.DatabaseURL = "mysql://x" }, "--database-url"},
		{func(c *config.Config) { c.Environment = "qa" }, "--env"},
		{func(c *config.Config) { c.AILimitsPerKey = "rpm=lots" }, "--ai-limits-per-key"},
		{func(c *config.Config) { c.AILimitsPerWorkflow = "budget=5/week" }, "--ai-limits-per-workflow"},
	} {
		c := testConfig(t)
		tc.mutate(&c)
		if _, err := app.Open(context.Background(), c, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want it to name %s", err, tc.want)
		}
	}
}

// The per-key limit of the flags applies to the OpenAI-compatible endpoint.
func TestAILimitsPerKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.AILimitsPerKey = "rpm=2"
	a, err := app.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	token, err := a.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ kind, name, spec string }{
		{gateway.KindVendor, "moat-local", `{"location":"on-premises","retentionDays":0}`},
		{gateway.KindConnector, "local", `{"type":"local","vendor":"moat-local"}`},
	} {
		if _, err := api.ApplyResource(ctx, a.Store, r.kind, r.name, []byte(r.spec), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Gateway.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	var statuses []int
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"local/entities","messages":[{"role":"user","content":"mail ana@example.com"}]}`))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		statuses = append(statuses, res.StatusCode)
	}
	if !slices.Equal(statuses, []int{200, 200, 429}) {
		t.Errorf("statuses %v, want 200, 200, 429", statuses)
	}
}
