package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/moatproject/moat/internal/connectors"
)

const (
	catalogKeyCanary  = "sk-CATALOGKEYCANARY-0001"
	catalogProdCanary = "sk-CATALOGPRODCANARY-0002"
)

// chatServer is a fake chat-completions server that records the
// Authorization header of each request and answers with the model's name.
type chatServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
	hits int
}

func newChatServer(t *testing.T, answer string) *chatServer {
	t.Helper()
	s := &chatServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Model string `json:"model"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &body)
		s.mu.Lock()
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.hits++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"x","object":"chat.completion","model":%q,"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":%q}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, body.Model, answer)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *chatServer) lastAuth(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.auth) == 0 {
		t.Fatal("the fake server received no request")
	}
	return s.auth[len(s.auth)-1]
}

func fakeEnv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func retention(days int) *int { return &days }

func testVendors() []Vendor {
	return []Vendor{
		{Name: "openai", Location: ManagedService, RetentionDays: retention(30)},
		{Name: "in-house", Location: OnPremises, RetentionDays: retention(0)},
	}
}

func hello() connectors.Request {
	return connectors.Request{Messages: []connectors.Message{{Role: connectors.User, Content: "hello"}}}
}

func chat(t *testing.T, c connectors.Connector, req connectors.Request) (connectors.Response, error) {
	t.Helper()
	return c.Chat(context.Background(), req)
}

// envResources: "oai" usable everywhere, "oai-prod" only in prod and
// staging (with a prod endpoint and key), "clf" local; the alias "fast"
// prefers oai-prod, and in dev is only the local classifier.
func envResources(devURL, prodURL string) Resources {
	return Resources{
		Vendors: testVendors(),
		Connectors: []Connector{
			{
				Name: "oai", Type: TypeOpenAI, Vendor: "openai", BaseURL: devURL,
				Credential: &Credential{Env: "OAI_KEY"},
				Models:     []string{"gpt-4o-mini", "gpt-4o"},
				Prices:     map[string]ModelPrice{"gpt-4o-mini": {Input: 0.15, Output: 0.6}},
				Limits:     &LimitSpec{RequestsPerMinute: 60, BudgetUSD: 12.5},
			},
			{
				Name: "oai-prod", Type: TypeOpenAI, Vendor: "openai", BaseURL: devURL,
				Credential: &Credential{Env: "OAI_KEY"},
				Models:     []string{"gpt-4o"},
				Environments: map[string]ConnectorOverride{
					"prod":    {BaseURL: prodURL, Credential: &Credential{Env: "OAI_PROD_KEY"}, Models: []string{"gpt-4.1"}},
					"staging": {},
				},
			},
			{
				Name: "clf", Type: TypeLocal, Vendor: "in-house",
				Local: &LocalSettings{Examples: []Example{
					{Text: "refund my order please", Label: "billing"},
					{Text: "the app crashes on start", Label: "bug"},
				}},
			},
		},
		Models: []Model{{
			Name:         "fast",
			Chain:        []ModelTarget{{Connector: "oai-prod"}, {Connector: "oai", Model: "gpt-4o-mini"}},
			Environments: map[string][]ModelTarget{"dev": {{Connector: "clf"}}},
		}},
	}
}

func targetNames(r Route) []string {
	var out []string
	for _, t := range r.Targets {
		out = append(out, t.Name)
	}
	return out
}

func TestCatalogEnvironments(t *testing.T) {
	dev := newChatServer(t, "from dev")
	prod := newChatServer(t, "from prod")
	env := fakeEnv(map[string]string{"OAI_KEY": catalogKeyCanary, "OAI_PROD_KEY": catalogProdCanary})
	tests := []struct {
		env            string
		targets        []string
		connectors     []string
		notConnectors  []string
		models         []string
		prodAnswer     string // what oai-prod answers, "" when not usable
		prodAuthHeader string
	}{
		{
			env: "prod", targets: []string{"oai-prod/gpt-4.1", "oai/gpt-4o-mini"},
			connectors: []string{"oai", "oai-prod", "clf"},
			models:     []string{"fast", "oai-prod/gpt-4.1", "oai/gpt-4o", "oai/gpt-4o-mini"},
			prodAnswer: "from prod", prodAuthHeader: "Bearer " + catalogProdCanary,
		},
		{
			env: "staging", targets: []string{"oai-prod/gpt-4o", "oai/gpt-4o-mini"},
			connectors: []string{"oai", "oai-prod", "clf"},
			models:     []string{"fast", "oai-prod/gpt-4o", "oai/gpt-4o", "oai/gpt-4o-mini"},
			prodAnswer: "from dev", prodAuthHeader: "Bearer " + catalogKeyCanary,
		},
		{
			env: "dev", targets: []string{"clf"},
			connectors: []string{"oai", "clf"}, notConnectors: []string{"oai-prod"},
			models: []string{"fast", "oai/gpt-4o", "oai/gpt-4o-mini"},
		},
		{
			env: "test", targets: []string{"oai/gpt-4o-mini"},
			connectors: []string{"oai", "clf"}, notConnectors: []string{"oai-prod"},
			models: []string{"fast", "oai/gpt-4o", "oai/gpt-4o-mini"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			cat, err := BuildCatalog(envResources(dev.srv.URL, prod.srv.URL), CatalogOptions{Environment: tc.env, Getenv: env})
			if err != nil {
				t.Fatal(err)
			}
			if cat.Environment() != tc.env {
				t.Errorf("Environment() = %q", cat.Environment())
			}
			route, err := cat.Resolve("fast", "", "")
			if err != nil {
				t.Fatal(err)
			}
			if route.Alias != "fast" || !reflect.DeepEqual(targetNames(route), tc.targets) {
				t.Errorf("route = %q %v, want fast %v", route.Alias, targetNames(route), tc.targets)
			}
			for _, name := range tc.connectors {
				if !cat.HasConnector(name) {
					t.Errorf("HasConnector(%s) = false", name)
				}
				if _, ok := cat.Connector(name); !ok {
					t.Errorf("Connector(%s) not found", name)
				}
			}
			for _, name := range tc.notConnectors {
				if cat.HasConnector(name) {
					t.Errorf("HasConnector(%s) = true outside its environments", name)
				}
				_, err := cat.Resolve("", name, "")
				var gerr *Error
				if !errors.As(err, &gerr) || gerr.Code != CodeUnknownModel || gerr.Stage != "who" {
					t.Errorf("Resolve(connector %s) = %v, want a who/unknown_model error", name, err)
				}
			}
			if !cat.HasModel("fast") || cat.HasModel("slow") {
				t.Error("HasModel is wrong")
			}
			var ids []string
			for _, m := range cat.Models() {
				ids = append(ids, m.ID)
			}
			if !reflect.DeepEqual(ids, tc.models) {
				t.Errorf("Models() = %v, want %v", ids, tc.models)
			}
			if tc.prodAnswer == "" {
				return
			}
			conn, _ := cat.Connector("oai-prod")
			srv := dev
			if tc.env == "prod" {
				srv = prod
			}
			req := hello()
			req.Model = route.Targets[0].Model
			res, err := chat(t, conn, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Content != tc.prodAnswer {
				t.Errorf("oai-prod answered %q, want %q", res.Content, tc.prodAnswer)
			}
			if got := srv.lastAuth(t); got != tc.prodAuthHeader {
				t.Errorf("oai-prod sent the wrong key (%d bytes)", len(got))
			}
		})
	}
}

func TestCatalogRouteTargets(t *testing.T) {
	cat, err := BuildCatalog(envResources("http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"), CatalogOptions{Environment: "dev", Getenv: fakeEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	route, err := cat.Resolve("", "oai", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(route.Targets) != 1 || route.Alias != "" {
		t.Fatalf("route = %+v", route)
	}
	tg := route.Targets[0]
	if tg.Name != "oai/gpt-4o-mini" || tg.Model != "gpt-4o-mini" || tg.ConnectorName != "oai" || tg.Vendor.Name != "openai" || tg.Connector == nil {
		t.Errorf("target = %+v", tg)
	}
	if tg.Price == nil || tg.Price.InputPerMillion != 150_000 || tg.Price.OutputPerMillion != 600_000 || tg.Free {
		t.Errorf("price = %+v free=%v", tg.Price, tg.Free)
	}
	if tg.Limits == nil || *tg.Limits != (Limits{RequestsPerMinute: 60, Budget: 12_500_000, BudgetPeriod: Month}) {
		t.Errorf("limits = %+v", tg.Limits)
	}
	// A model without a price has none; another connector's target does
	// not share the limits pointer.
	other, err := cat.Resolve("", "oai", "gpt-4o")
	if err != nil {
		t.Fatal(err)
	}
	if other.Targets[0].Price != nil || other.Targets[0].Name != "oai/gpt-4o" {
		t.Errorf("gpt-4o target = %+v", other.Targets[0])
	}
	other.Targets[0].Limits.RequestsPerMinute = 1
	again, _ := cat.Resolve("", "oai", "")
	if again.Targets[0].Limits.RequestsPerMinute != 60 {
		t.Error("a caller changed the catalog's limits")
	}

	local, err := cat.Resolve("", "clf", "")
	if err != nil {
		t.Fatal(err)
	}
	lt := local.Targets[0]
	if lt.Name != "clf" || lt.Model != "" || !lt.Free || lt.Price == nil || !lt.Price.Free || lt.Vendor.Location != OnPremises {
		t.Errorf("local target = %+v", lt)
	}
	req := hello()
	req.Messages[0].Content = "please refund my order"
	req.Labels = []string{"billing", "bug"}
	res, err := chat(t, lt.Connector, req)
	if err != nil || res.Content != "billing" {
		t.Errorf("local classified %q, %v", res.Content, err)
	}
}

func TestCatalogResolveErrors(t *testing.T) {
	res := envResources("http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1")
	res.Models = append(res.Models, Model{Name: "prod-only", Chain: []ModelTarget{{Connector: "oai-prod"}}})
	cat, err := BuildCatalog(res, CatalogOptions{Environment: "dev", Getenv: fakeEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                    string
		alias, connector, model string
		stage, message          string
	}{
		{"unknown alias", "gpt-5", "", "", "shape", `unknown model "gpt-5": no alias of that name (known: fast)`},
		{"alias without usable connector", "prod-only", "", "", "who", "model alias prod-only has no connector usable in environment dev"},
		{"unknown connector", "", "nope", "", "shape", `unknown connector "nope"`},
		{"connector of another environment", "", "oai-prod", "", "who", "connector oai-prod may not be used in environment dev"},
		{"model not listed", "", "oai", "gpt-3", "shape", `connector oai does not allow model "gpt-3" (allowed: gpt-4o-mini, gpt-4o)`},
		{"nothing named", "", "", "", "shape", "no model named: give a model alias or a connector"},
		{"both named", "fast", "oai", "", "shape", "name either a model alias or a connector, not both"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cat.Resolve(tc.alias, tc.connector, tc.model)
			var gerr *Error
			if !errors.As(err, &gerr) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if gerr.Code != CodeUnknownModel || gerr.Stage != tc.stage || gerr.Message != tc.message {
				t.Errorf("got %s/%s %q, want %s/%s %q", gerr.Stage, gerr.Code, gerr.Message, tc.stage, CodeUnknownModel, tc.message)
			}
		})
	}
	if cat.HasModel("prod-only") {
		t.Error("an alias without a usable connector is reported usable")
	}
	for _, m := range cat.Models() {
		if m.ID == "prod-only" {
			t.Error("Models lists an alias without a usable connector")
		}
	}
}

func TestCatalogUnknownAliasListsAtMost20(t *testing.T) {
	res := Resources{
		Vendors:    testVendors(),
		Connectors: []Connector{{Name: "clf", Type: TypeLocal, Vendor: "in-house"}},
	}
	for i := range 25 {
		res.Models = append(res.Models, Model{Name: fmt.Sprintf("m%02d", i), Chain: []ModelTarget{{Connector: "clf"}}})
	}
	cat, err := BuildCatalog(res, CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 1000)
	_, err = cat.Resolve(long, "", "")
	var gerr *Error
	if !errors.As(err, &gerr) {
		t.Fatal(err)
	}
	if !strings.Contains(gerr.Message, "m19 and 5 more)") || strings.Contains(gerr.Message, "m20") {
		t.Errorf("message = %q", gerr.Message)
	}
	if len(gerr.Message) > 600 {
		t.Errorf("message of %d bytes repeats an unbounded name", len(gerr.Message))
	}
}

func TestCatalogMissingCredentialFailsClosedAtCall(t *testing.T) {
	srv := newChatServer(t, "should not be reached")
	res := Resources{
		Vendors: testVendors(),
		Connectors: []Connector{
			{Name: "oai", Type: TypeOpenAI, Vendor: "openai", BaseURL: srv.srv.URL, Credential: &Credential{Env: "MISSING_KEY"}, Models: []string{"gpt-4o"}},
			{Name: "ant", Type: TypeAnthropic, Vendor: "openai", BaseURL: srv.srv.URL, Credential: &Credential{Env: "MISSING_ANT"}},
			{Name: "web", Type: TypeHTTP, Vendor: "in-house", Credential: &Credential{Env: "MISSING_WEB"}, HTTP: &HTTPSettings{URL: srv.srv.URL, Response: "a"}},
			{Name: "fine", Type: TypeOpenAI, Vendor: "openai", BaseURL: srv.srv.URL, Credential: &Credential{Env: "SET_KEY"}, Models: []string{"gpt-4o"}},
		},
	}
	cat, err := BuildCatalog(res, CatalogOptions{Getenv: fakeEnv(map[string]string{"SET_KEY": catalogKeyCanary})})
	if err != nil {
		t.Fatalf("a missing credential failed the build: %v", err)
	}
	for name, env := range map[string]string{"oai": "MISSING_KEY", "ant": "MISSING_ANT", "web": "MISSING_WEB"} {
		conn, ok := cat.Connector(name)
		if !ok {
			t.Fatalf("connector %s not built", name)
		}
		req := hello()
		req.Model = "gpt-4o"
		_, err := chat(t, conn, req)
		if err == nil {
			t.Fatalf("%s: call succeeded without its credential", name)
		}
		want := fmt.Sprintf("connector %s: credential environment variable %s is not set", name, env)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not say %q", name, err, want)
		}
		var missing *CredentialMissingError
		if !errors.Is(err, connectors.ErrRejected) || !errors.As(err, &missing) || !strings.Contains(missing.Missing, env) || missing.Connector != name {
			t.Errorf("%s: error %v is not a permanent rejection", name, err)
		}
		if strings.Contains(err.Error(), catalogKeyCanary) {
			t.Errorf("%s: error repeats a credential value", name)
		}
		streamer, ok := conn.(connectors.Streamer)
		if !ok {
			t.Fatalf("%s: the stand-in does not stream", name)
		}
		if err := streamer.ChatStream(context.Background(), req, func(connectors.Chunk) error { return nil }); err == nil || !strings.Contains(err.Error(), env) {
			t.Errorf("%s: stream error = %v", name, err)
		}
	}
	if srv.hits != 0 {
		t.Errorf("connectors without credentials reached the server %d times", srv.hits)
	}
	fine, _ := cat.Connector("fine")
	req := hello()
	req.Model = "gpt-4o"
	if _, err := chat(t, fine, req); err != nil {
		t.Fatalf("the connector with its credential failed: %v", err)
	}
	if srv.lastAuth(t) != "Bearer "+catalogKeyCanary {
		t.Error("the connector with its credential sent the wrong key")
	}
}

func TestCatalogMissingCredentialStillChecksSettings(t *testing.T) {
	res := Resources{
		Vendors: testVendors(),
		Connectors: []Connector{{
			Name: "web", Type: TypeHTTP, Vendor: "in-house", Credential: &Credential{Env: "MISSING_WEB"},
			HTTP: &HTTPSettings{URL: "http://127.0.0.1:1/x", Response: "a", Body: map[string]any{"q": "{{ nope }}"}},
		}},
	}
	_, err := BuildCatalog(res, CatalogOptions{Getenv: fakeEnv(nil)})
	if err == nil || !strings.Contains(err.Error(), "gateway: connector web:") {
		t.Fatalf("err = %v, want an error naming connector web", err)
	}
}

func TestCatalogHTTPCredentialHeader(t *testing.T) {
	var mu sync.Mutex
	got := http.Header{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"a":"ok"}`)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name, header   string
		wantHeader     string
		wantValue      string
		configuredHdrs map[string]string
	}{
		{"default", "", "Authorization", "Bearer " + catalogKeyCanary, map[string]string{"X-Team": "ml"}},
		{"explicit authorization", "authorization", "Authorization", "Bearer " + catalogKeyCanary, nil},
		{"custom header", "X-Api-Key", "X-Api-Key", catalogKeyCanary, map[string]string{"x-api-key": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Resources{
				Vendors: testVendors(),
				Connectors: []Connector{{
					Name: "web", Type: TypeHTTP, Vendor: "in-house", Credential: &Credential{Env: "WEB_KEY", Header: tc.header},
					HTTP: &HTTPSettings{URL: srv.URL, Response: "a", Headers: tc.configuredHdrs},
				}},
			}
			cat, err := BuildCatalog(res, CatalogOptions{Getenv: fakeEnv(map[string]string{"WEB_KEY": catalogKeyCanary})})
			if err != nil {
				t.Fatal(err)
			}
			conn, _ := cat.Connector("web")
			if _, err := chat(t, conn, hello()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if v := got.Values(tc.wantHeader); len(v) != 1 || v[0] != tc.wantValue {
				t.Errorf("header %s carries %d values, not the credential", tc.wantHeader, len(v))
			}
			if tc.configuredHdrs["X-Team"] != "" && got.Get("X-Team") != "ml" {
				t.Error("configured header lost")
			}
		})
	}
}

func TestCatalogReplayRecordThenPlay(t *testing.T) {
	srv := newChatServer(t, "recorded answer")
	dir := t.TempDir()
	record := Resources{
		Vendors: testVendors(),
		Connectors: []Connector{
			{Name: "oai", Type: TypeOpenAI, Vendor: "openai", BaseURL: srv.srv.URL, Credential: &Credential{Env: "OAI_KEY"}, Models: []string{"gpt-4o"}},
			{Name: "tape", Type: TypeReplay, Vendor: "openai", Models: []string{"gpt-4o"}, Replay: &ReplaySettings{Cassette: "tapes/demo.json", Record: "oai"}},
		},
		Models: []Model{{Name: "demo", Chain: []ModelTarget{{Connector: "tape"}}}},
	}
	opts := CatalogOptions{DataDir: dir, Getenv: fakeEnv(map[string]string{"OAI_KEY": catalogKeyCanary})}
	cat, err := BuildCatalog(record, opts)
	if err != nil {
		t.Fatal(err)
	}
	route, err := cat.Resolve("demo", "", "")
	if err != nil {
		t.Fatal(err)
	}
	req := hello()
	req.Model = route.Targets[0].Model
	first, err := chat(t, route.Targets[0].Connector, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Content != "recorded answer" || srv.hits != 1 {
		t.Fatalf("recording call: %q, %d hits", first.Content, srv.hits)
	}
	srv.srv.Close()

	// Played back: no upstream, no credential, same answer.
	play := record
	play.Connectors = []Connector{{Name: "tape", Type: TypeReplay, Vendor: "openai", Models: []string{"gpt-4o"}, Replay: &ReplaySettings{Cassette: filepath.Join(dir, "tapes/demo.json")}}}
	cat, err = BuildCatalog(play, CatalogOptions{Getenv: fakeEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	route, err = cat.Resolve("demo", "", "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := chat(t, route.Targets[0].Connector, req)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("played %+v, recorded %+v", again, first)
	}
	other := hello()
	other.Model = "gpt-4o"
	other.Messages[0].Content = "something never recorded"
	if _, err := chat(t, route.Targets[0].Connector, other); !errors.Is(err, connectors.ErrNoRecording) {
		t.Errorf("unrecorded request: %v", err)
	}
}

func TestCatalogBuildErrors(t *testing.T) {
	base := func() Resources {
		return Resources{
			Vendors: testVendors(),
			Connectors: []Connector{
				{Name: "oai", Type: TypeOpenAI, Vendor: "openai", Models: []string{"gpt-4o"}, Environments: map[string]ConnectorOverride{"prod": {Models: []string{"gpt-4.1"}}}},
				{Name: "clf", Type: TypeLocal, Vendor: "in-house"},
			},
		}
	}
	tests := []struct {
		name   string
		change func(*Resources)
		opts   CatalogOptions
		want   string
	}{
		{"resources fail their check", func(r *Resources) { r.Connectors[0].Vendor = "" }, CatalogOptions{}, "vendor"},
		{"relative cassette without data dir", func(r *Resources) {
			r.Connectors = append(r.Connectors, Connector{Name: "tape", Type: TypeReplay, Vendor: "openai", Replay: &ReplaySettings{Cassette: "x.json"}})
		}, CatalogOptions{}, "gateway: connector tape: the cassette path is relative"},
		{"missing cassette", func(r *Resources) {
			r.Connectors = append(r.Connectors, Connector{Name: "tape", Type: TypeReplay, Vendor: "openai", Replay: &ReplaySettings{Cassette: "absent.json"}})
		}, CatalogOptions{DataDir: "/nonexistent-b1"}, "gateway: connector tape:"},
		{"recording a connector of another environment", func(r *Resources) {
			r.Connectors[0].Environments = map[string]ConnectorOverride{"prod": {}}
			r.Connectors = append(r.Connectors, Connector{Name: "tape", Type: TypeReplay, Vendor: "openai", Replay: &ReplaySettings{Cassette: "/tmp/b1-never.json", Record: "oai"}})
		}, CatalogOptions{Environment: "dev"}, "gateway: connector tape: records connector oai, which may not be used in environment"},
		{"alias model not allowed by the override", func(r *Resources) {
			r.Models = []Model{{Name: "m", Chain: []ModelTarget{{Connector: "oai", Model: "gpt-4o"}}}}
		}, CatalogOptions{Environment: "prod"}, `gateway: model alias m: connector oai does not allow model "gpt-4o" in environment "prod"`},
		{"bad local examples", func(r *Resources) {
			r.Connectors[1].Local = &LocalSettings{Labels: []string{"a", "b"}, Examples: []Example{{Text: "x", Label: "a"}}}
		}, CatalogOptions{}, "gateway: connector clf: local:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := base()
			tc.change(&res)
			_, err := BuildCatalog(res, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestMicroDollars(t *testing.T) {
	tests := []struct {
		usd  float64
		want int64
		ok   bool
	}{
		{0, 0, true}, {3, 3_000_000, true}, {0.15, 150_000, true}, {0.0000005, 1, true}, {2.5e-7, 0, true},
		{-1, 0, false}, {1e13, 0, false},
	}
	for _, tc := range tests {
		got, err := microDollars(tc.usd, maxBudgetUSD)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("microDollars(%g) = %d, %v", tc.usd, got, err)
		}
	}
}

func TestCatalogAzureOpenAI(t *testing.T) {
	var mu sync.Mutex
	var path, query, apiKey string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		path, query, apiKey = r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("api-key")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"azure"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(srv.Close)
	res := Resources{
		Vendors: testVendors(),
		Connectors: []Connector{{
			Name: "azure", Type: TypeOpenAI, Vendor: "openai", BaseURL: srv.URL, Credential: &Credential{Env: "AZURE_KEY"},
			Models: []string{"prod-gpt4o"}, OpenAI: &OpenAISettings{AzureAPIVersion: "2024-10-21"},
		}},
	}
	cat, err := BuildCatalog(res, CatalogOptions{HTTPClient: srv.Client(), Getenv: fakeEnv(map[string]string{"AZURE_KEY": catalogKeyCanary})})
	if err != nil {
		t.Fatal(err)
	}
	route, err := cat.Resolve("", "azure", "")
	if err != nil {
		t.Fatal(err)
	}
	req := hello()
	req.Model = route.Targets[0].Model
	if got, err := chat(t, route.Targets[0].Connector, req); err != nil || got.Content != "azure" {
		t.Fatalf("got %q, %v", got.Content, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if path != "/openai/deployments/prod-gpt4o/chat/completions" || query != "api-version=2024-10-21" || apiKey != catalogKeyCanary {
		t.Errorf("path %q query %q, key sent: %v", path, query, apiKey == catalogKeyCanary)
	}

	// Without its key the Azure connector is still built, and fails closed.
	cat, err = BuildCatalog(res, CatalogOptions{HTTPClient: srv.Client(), Getenv: fakeEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := cat.Connector("azure")
	if _, err := chat(t, conn, req); err == nil || !strings.Contains(err.Error(), "AZURE_KEY is not set") {
		t.Errorf("err = %v", err)
	}
}

func TestCatalogLocalExamplesPerRequest(t *testing.T) {
	res := Resources{
		Vendors:    testVendors(),
		Connectors: []Connector{{Name: "clf", Type: TypeLocal, Vendor: "in-house"}},
	}
	cat, err := BuildCatalog(res, CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := cat.Connector("clf")
	req := hello()
	req.Messages[0].Content = "the screen stays black after the update"
	req.Labels = []string{"billing", "bug"}
	if _, err := chat(t, conn, req); !errors.Is(err, connectors.ErrRejected) {
		t.Fatalf("a local connector without examples classified: %v", err)
	}
	req.Examples = []connectors.Example{
		{Text: "I was charged twice, refund me", Label: "billing"},
		{Text: "my invoice shows the wrong amount", Label: "billing"},
		{Text: "the app crashes after the update", Label: "bug"},
		{Text: "black screen, nothing loads", Label: "bug"},
	}
	got, err := chat(t, conn, req)
	if err != nil || got.Content != "bug" {
		t.Fatalf("got %q, %v", got.Content, err)
	}
}
