package gateway

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

func intp(i int) *int { return &i }

func validVendor() Vendor {
	return Vendor{Name: "openai", Location: ManagedService, Region: "us", RetentionDays: intp(30)}
}

func validConnector() Connector {
	return Connector{
		Name: "openai", Type: TypeOpenAI, Vendor: "openai", BaseURL: "https://api.openai.com/v1",
		Credential: &Credential{Env: "OPENAI_API_KEY"}, Timeout: "60s", Models: []string{"gpt-4o-mini", "gpt-4o"},
		Prices: map[string]ModelPrice{"gpt-4o-mini": {Input: 0.15, Output: 0.6}},
		Limits: &LimitSpec{RequestsPerMinute: 60, BudgetUSD: 10, BudgetPeriod: Day},
		Environments: map[string]ConnectorOverride{
			"prod": {Credential: &Credential{Env: "OPENAI_PROD_KEY"}},
			"dev":  {Models: []string{"gpt-4o-mini"}},
		},
	}
}

func validModel() Model {
	return Model{Name: "fast", Chain: []ModelTarget{{Connector: "openai", Model: "gpt-4o-mini"}, {Connector: "openai"}},
		Environments: map[string][]ModelTarget{"dev": {{Connector: "openai"}}}}
}

// wantProblems checks that got holds exactly one problem per wanted
// prefix, in any order.
func wantProblems(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d problem(s), want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("no problem starts with %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

func TestCheckVendor(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(v *Vendor)
		want   []string
	}{
		{"valid", func(v *Vendor) {}, nil},
		{"valid on premises without retention", func(v *Vendor) { v.Location, v.RetentionDays = OnPremises, nil }, nil},
		{"unknown retention", func(v *Vendor) { v.RetentionDays = intp(-1) }, nil},
		{"no location", func(v *Vendor) { v.Location = "" }, []string{"location: must be one of on-premises, private-cloud, managed-service"}},
		{"bad location", func(v *Vendor) { v.Location = "cloud" }, []string{"location: "}},
		{"bad retention", func(v *Vendor) { v.RetentionDays = intp(-2) }, []string{"retentionDays: "}},
		{"long region", func(v *Vendor) { v.Region = strings.Repeat("r", 65) }, []string{"region: "}},
		{"upper-case name", func(v *Vendor) { v.Name = "OpenAI" }, []string{"name: "}},
		{"empty name", func(v *Vendor) { v.Name = "" }, []string{"name: "}},
		{"name of 64", func(v *Vendor) { v.Name = strings.Repeat("a", 64) }, []string{"name: "}},
		{"long description", func(v *Vendor) { v.Description = strings.Repeat("d", 1001) }, []string{"description: "}},
		{"every problem at once", func(v *Vendor) { v.Name, v.Location, v.RetentionDays = "-x", "", intp(-5) },
			[]string{"name: ", "location: ", "retentionDays: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := validVendor()
			tc.mutate(&v)
			wantProblems(t, CheckVendor(v), tc.want...)
		})
	}
}

func TestCheckConnector(t *testing.T) {
	httpConnector := func(c *Connector) {
		*c = Connector{Name: "scorer", Type: TypeHTTP, Vendor: "in-house",
			Credential: &Credential{Env: "SCORER_TOKEN", Header: "X-Api-Key"},
			HTTP: &HTTPSettings{URL: "https://scorer.internal/v1/score", Method: "POST",
				Headers: map[string]string{"X-Team": "risk"}, Body: map[string]any{"text": "{{ prompt }}"}, Response: "result.label"}}
	}
	tests := []struct {
		name   string
		mutate func(c *Connector)
		want   []string
	}{
		{"valid openai", func(c *Connector) {}, nil},
		{"valid anthropic with defaults", func(c *Connector) {
			*c = Connector{Name: "claude", Type: TypeAnthropic, Vendor: "anthropic", Credential: &Credential{Env: "ANTHROPIC_API_KEY"}}
		}, nil},
		{"valid http", httpConnector, nil},
		{"valid local", func(c *Connector) {
			*c = Connector{Name: "triage", Type: TypeLocal, Vendor: "on-box", Local: &LocalSettings{Labels: []string{"bug", "question"},
				Examples: []Example{{Text: "it crashes", Label: "bug"}, {Text: "how do I", Label: "question"}}}}
		}, nil},
		{"valid replay", func(c *Connector) {
			*c = Connector{Name: "cassette", Type: TypeReplay, Vendor: "openai", Replay: &ReplaySettings{Cassette: "tapes/a.json", Record: "openai"}}
		}, nil},
		{"valid azure", func(c *Connector) {
			c.BaseURL, c.OpenAI = "https://acme.openai.azure.com", &OpenAISettings{AzureAPIVersion: "2024-10-21"}
		}, nil},
		{"unknown type", func(c *Connector) { c.Type = "gemini" }, []string{"type: must be one of openai, anthropic, http, local, replay"}},
		{"no vendor", func(c *Connector) { c.Vendor = "" }, []string{"vendor: is required"}},
		{"ftp base URL", func(c *Connector) { c.BaseURL = "ftp://api.example.com" }, []string{"baseURL: "}},
		{"relative base URL", func(c *Connector) { c.BaseURL = "/v1" }, []string{"baseURL: "}},
		{"base URL with user", func(c *Connector) { c.BaseURL = "https://u:p@api.example.com" }, []string{"baseURL: "}},
		{"base URL on local", func(c *Connector) { c.Type, c.Models, c.Prices = TypeLocal, nil, nil; c.Environments = nil }, []string{"baseURL: "}},
		{"bad env name", func(c *Connector) { c.Credential.Env = "openai-key" }, []string{"credential.env: "}},
		{"env starting with a digit", func(c *Connector) { c.Credential.Env = "1KEY" }, []string{"credential.env: "}},
		{"long env", func(c *Connector) { c.Credential.Env = strings.Repeat("K", 129) }, []string{"credential.env: "}},
		{"no credential source", func(c *Connector) { c.Credential.Env = "" }, []string{"credential: needs secret"}},
		{"secret and env", func(c *Connector) { c.Credential.Secret = "openai-key" }, []string{"credential: names both"}},
		{"bad secret name", func(c *Connector) { c.Credential.Env, c.Credential.Secret = "", "9 lives" }, []string{"credential.secret: must be a secret name"}},
		{"header on openai", func(c *Connector) { c.Credential.Header = "X-Key" }, []string{"credential.header: "}},
		{"bad header on http", func(c *Connector) { httpConnector(c); c.Credential.Header = "X Key" }, []string{"credential.header: "}},
		{"bad timeout", func(c *Connector) { c.Timeout = "soon" }, []string{"timeout: "}},
		{"zero timeout", func(c *Connector) { c.Timeout = "0s" }, []string{"timeout: "}},
		{"timeout over 10m", func(c *Connector) { c.Timeout = "11m" }, []string{"timeout: "}},
		{"timeout of 10m", func(c *Connector) { c.Timeout = "10m" }, nil},
		{"too many models", func(c *Connector) {
			c.Models = make([]string, 101)
			for i := range c.Models {
				c.Models[i] = fmt.Sprint("m", i)
			}
		}, []string{"models: "}},
		{"long model name", func(c *Connector) { c.Models = []string{strings.Repeat("m", 201)} }, []string{"models[0]: "}},
		{"duplicate model", func(c *Connector) { c.Models = []string{"a", "a"} }, []string{"models[1]: "}},
		{"negative price", func(c *Connector) { c.Prices["x"] = ModelPrice{Input: -1} }, []string{"prices.x.input: "}},
		{"infinite price", func(c *Connector) { c.Prices["x"] = ModelPrice{Output: math.Inf(1)} }, []string{"prices.x.output: "}},
		{"NaN price", func(c *Connector) { c.Prices["x"] = ModelPrice{Input: math.NaN()} }, []string{"prices.x.input: "}},
		{"negative limits", func(c *Connector) {
			c.Limits = &LimitSpec{RequestsPerMinute: -1, TokensPerMinute: -1, BudgetUSD: -1, BudgetPeriod: "week"}
		}, []string{"limits.requestsPerMinute: ", "limits.tokensPerMinute: ", "limits.budgetUSD: ", "limits.budgetPeriod: "}},
		{"http block on openai", func(c *Connector) { c.HTTP = &HTTPSettings{URL: "https://x", Response: "a"} }, []string{"http: only a connector of type http"}},
		{"http without block", func(c *Connector) { httpConnector(c); c.HTTP = nil }, []string{"http: is required"}},
		{"http with openai block", func(c *Connector) { httpConnector(c); c.OpenAI = &OpenAISettings{} }, []string{"openai: "}},
		{"http without url and response", func(c *Connector) { httpConnector(c); c.HTTP.URL, c.HTTP.Response = "", "" },
			[]string{"http.url: is required", "http.response: is required"}},
		{"http url with credential", func(c *Connector) { httpConnector(c); c.HTTP.URL = "https://u:p@x.example/a?api_key=1" },
			[]string{"http.url: must not carry user", "http.url: query parameter api_key"}},
		{"http literal authorization", func(c *Connector) { httpConnector(c); c.HTTP.Headers["Authorization"] = "Bearer abc" },
			[]string{"http.headers.Authorization: must not hold a literal credential"}},
		{"http literal api key any case", func(c *Connector) { httpConnector(c); c.HTTP.Headers["x-API-key"] = "abc" },
			[]string{"http.headers.x-API-key: "}},
		{"http header with newline", func(c *Connector) { httpConnector(c); c.HTTP.Headers["X-Team"] = "a\r\nb" }, []string{"http.headers.X-Team: "}},
		{"http bad method", func(c *Connector) { httpConnector(c); c.HTTP.Method = "TRACE" }, []string{"http.method: "}},
		{"http bad response path", func(c *Connector) { httpConnector(c); c.HTTP.Response = "a..b" }, []string{"http.response: "}},
		{"http negative max", func(c *Connector) { httpConnector(c); c.HTTP.MaxResponseBytes = -1 }, []string{"http.maxResponseBytes: "}},
		{"local with unlabelled example", func(c *Connector) {
			*c = Connector{Name: "triage", Type: TypeLocal, Vendor: "on-box", Local: &LocalSettings{Labels: []string{"bug"},
				Examples: []Example{{Text: "x", Label: ""}, {Text: "y", Label: "feature"}, {Text: " ", Label: "bug"}}}}
		}, []string{"local.examples[0].label: ", "local.examples[1].label: is not one of", "local.examples[2].text: "}},
		{"local with too many examples", func(c *Connector) {
			*c = Connector{Name: "triage", Type: TypeLocal, Vendor: "on-box", Local: &LocalSettings{Examples: make([]Example, 10_001)}}
		}, []string{"local.examples: "}},
		{"replay without cassette", func(c *Connector) {
			*c = Connector{Name: "cassette", Type: TypeReplay, Vendor: "openai"}
		}, []string{"replay: is required"}},
		{"replay with empty cassette and bad record", func(c *Connector) {
			*c = Connector{Name: "cassette", Type: TypeReplay, Vendor: "openai", Replay: &ReplaySettings{Record: "Open AI"}}
		}, []string{"replay.cassette: ", "replay.record: "}},
		{"azure without base URL", func(c *Connector) { c.BaseURL, c.OpenAI = "", &OpenAISettings{AzureAPIVersion: "2024-10-21"} },
			[]string{"openai.azureAPIVersion: needs baseURL"}},
		{"bad environment name", func(c *Connector) { c.Environments["Prod"] = ConnectorOverride{} }, []string{"environments: "}},
		{"bad environment override", func(c *Connector) {
			c.Environments["prod"] = ConnectorOverride{BaseURL: "nope", Credential: &Credential{Env: "x"}, Models: []string{""}}
		}, []string{"environments.prod.baseURL: ", "environments.prod.credential.env: ", "environments.prod.models[0]: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConnector()
			tc.mutate(&c)
			wantProblems(t, CheckConnector(c), tc.want...)
		})
	}
}

// TestCheckConnectorKeepsHeaderValuesOut: a refused literal credential is
// never repeated in the message.
func TestCheckConnectorKeepsHeaderValuesOut(t *testing.T) {
	c := Connector{Name: "scorer", Type: TypeHTTP, Vendor: "v", HTTP: &HTTPSettings{URL: "https://x.example/?token=sekrit-query",
		Headers: map[string]string{"Authorization": "Bearer sekrit-header"}, Response: "a"}}
	for _, p := range CheckConnector(c) {
		if strings.Contains(p, "sekrit") {
			t.Errorf("problem repeats a credential: %s", p)
		}
	}
}

func TestCheckModel(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Model)
		want   []string
	}{
		{"valid", func(m *Model) {}, nil},
		{"empty chain", func(m *Model) { m.Chain = nil }, []string{"chain: must list 1 to 10 targets"}},
		{"chain of 11", func(m *Model) { m.Chain = make([]ModelTarget, 11) }, []string{"chain: "}},
		{"target without connector", func(m *Model) { m.Chain[1].Connector = "" }, []string{"chain[1].connector: is required"}},
		{"bad connector name", func(m *Model) { m.Chain[0].Connector = "Open_AI" }, []string{"chain[0].connector: "}},
		{"long model", func(m *Model) { m.Chain[0].Model = strings.Repeat("m", 201) }, []string{"chain[0].model: "}},
		{"bad environment", func(m *Model) { m.Environments["staging"] = nil; m.Environments["QA"] = m.Chain },
			[]string{"environments.staging: ", "environments: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := validModel()
			tc.mutate(&m)
			wantProblems(t, CheckModel(m), tc.want...)
		})
	}
}

func validResources() Resources {
	return Resources{
		Vendors:    []Vendor{validVendor(), {Name: "on-box", Location: OnPremises}},
		Connectors: []Connector{validConnector(), {Name: "cassette", Type: TypeReplay, Vendor: "openai", Replay: &ReplaySettings{Cassette: "a.json", Record: "openai"}}},
		Models:     []Model{validModel()},
	}
}

func TestResourcesCheck(t *testing.T) {
	type want struct{ kind, name, message string }
	tests := []struct {
		name   string
		mutate func(r *Resources)
		want   []want
	}{
		{"valid", func(r *Resources) {}, nil},
		{"empty", func(r *Resources) { *r = Resources{} }, nil},
		{"missing vendor", func(r *Resources) { r.Connectors[0].Vendor = "azure" },
			[]want{{KindConnector, "openai", `vendor: no vendor named "azure"`}}},
		{"missing connector in chain", func(r *Resources) { r.Models[0].Chain[1].Connector = "claude" },
			[]want{{KindModel, "fast", `chain[1].connector: no connector named "claude"`}}},
		{"missing connector in an environment's chain", func(r *Resources) { r.Models[0].Environments["dev"][0].Connector = "claude" },
			[]want{{KindModel, "fast", `environments.dev[0].connector: no connector named "claude"`}}},
		{"model the connector does not list", func(r *Resources) { r.Models[0].Chain[0].Model = "o1" },
			[]want{{KindModel, "fast", `chain[0].model: connector "openai" does not list`}}},
		{"record a missing connector", func(r *Resources) { r.Connectors[1].Replay.Record = "claude" },
			[]want{{KindConnector, "cassette", `replay.record: no connector named "claude"`}}},
		{"record a replay connector", func(r *Resources) { r.Connectors[1].Replay.Record = "cassette" },
			[]want{{KindConnector, "cassette", `replay.record: connector "cassette" is itself a replay`}}},
		{"duplicates", func(r *Resources) {
			r.Vendors = append(r.Vendors, validVendor())
			r.Connectors = append(r.Connectors, validConnector())
			r.Models = append(r.Models, validModel())
		}, []want{{KindVendor, "openai", "name: another vendor"}, {KindConnector, "openai", "name: another connector"}, {KindModel, "fast", "name: another model"}}},
		{"own problems and references together", func(r *Resources) {
			r.Vendors[0].Location = "moon"
			r.Connectors[0].Vendor = "nobody"
		}, []want{{KindVendor, "openai", "location: "}, {KindConnector, "openai", `vendor: no vendor named "nobody"`}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := validResources()
			tc.mutate(&r)
			err := r.Check()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			var re *ResourceError
			if !errors.As(err, &re) {
				t.Fatalf("Check = %v, want a *ResourceError", err)
			}
			if len(re.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d: %v", len(re.Problems), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(re.Problems, func(p ResourceProblem) bool {
					return p.Kind == w.kind && p.Name == w.name && strings.HasPrefix(p.Message, w.message)
				}) {
					t.Errorf("no problem %s %s %q in %v", w.kind, w.name, w.message, err)
				}
			}
			if !strings.HasPrefix(err.Error(), "gateway: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestResourcesDependents(t *testing.T) {
	r := validResources()
	if got := r.Dependents(KindVendor, "openai"); !slices.Equal(got, []string{"Connector openai", "Connector cassette"}) {
		t.Errorf("vendor openai dependents = %v", got)
	}
	if got := r.Dependents(KindVendor, "on-box"); len(got) != 0 {
		t.Errorf("unused vendor has dependents %v", got)
	}
	if got := r.Dependents(KindConnector, "openai"); !slices.Equal(got, []string{"Connector cassette", "Model fast"}) {
		t.Errorf("connector openai dependents = %v", got)
	}
	if got := r.Dependents(KindConnector, "cassette"); len(got) != 0 {
		t.Errorf("unused connector has dependents %v", got)
	}
	if got := r.Dependents(KindModel, "fast"); len(got) != 0 {
		t.Errorf("models have no dependents, got %v", got)
	}
}

func TestResourceProblemField(t *testing.T) {
	for msg, want := range map[string]string{
		"location: must be one of":      "location",
		"chain[0].connector: is needed": "chain[0].connector",
		"no field here":                 "",
		`vendor "x": odd`:               "",
	} {
		if got := (ResourceProblem{Message: msg}).Field(); got != want {
			t.Errorf("Field of %q = %q, want %q", msg, got, want)
		}
	}
}
