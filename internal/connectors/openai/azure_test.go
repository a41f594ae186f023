package openai

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/connectors"
)

// azureSeen is what a fake Azure OpenAI endpoint received.
type azureSeen struct {
	path, query, apiKey, auth string
	body                      map[string]any
}

func newAzureFake(t *testing.T, tls bool) (*httptest.Server, func() azureSeen) {
	t.Helper()
	var mu sync.Mutex
	var seen azureSeen
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = azureSeen{path: r.URL.EscapedPath(), query: r.URL.RawQuery, apiKey: r.Header.Get("api-key"), auth: r.Header.Get("Authorization")}
		_ = json.Unmarshal(raw, &seen.body)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"hi from azure"}}],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}`)
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, func() azureSeen {
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

func TestAzureDeploymentPathAndKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"https", true}, {"loopback http", false}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, seen := newAzureFake(t, tc.tls)
			c, err := New(Config{BaseURL: srv.URL, APIKey: testKey, AzureAPIVersion: "2024-10-21", HTTPClient: srv.Client(), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Chat(t.Context(), connectors.Request{Model: "my-deployment", Messages: []connectors.Message{{Role: connectors.User, Content: "hello"}}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Content != "hi from azure" || res.Usage.PromptTokens != 4 {
				t.Errorf("response = %+v", res)
			}
			s := seen()
			if s.path != "/openai/deployments/my-deployment/chat/completions" {
				t.Errorf("path = %q", s.path)
			}
			if s.query != "api-version=2024-10-21" {
				t.Errorf("query = %q", s.query)
			}
			if s.apiKey != testKey {
				t.Errorf("api-key header carries %d bytes, not the key", len(s.apiKey))
			}
			if s.auth != "" {
				t.Error("the key was also sent as a bearer token")
			}
		})
	}
}

func TestAzureConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no endpoint", Config{APIKey: testKey, AzureAPIVersion: "2024-10-21"}, "endpoint"},
		{"no key", Config{BaseURL: "https://x.openai.azure.com", AzureAPIVersion: "2024-10-21"}, "API key"},
		{"odd version", Config{BaseURL: "https://x.openai.azure.com", APIKey: testKey, AzureAPIVersion: "2024 10/21"}, "API version"},
		{"organization", Config{BaseURL: "https://x.openai.azure.com", APIKey: testKey, AzureAPIVersion: "2024-10-21", Organization: "org"}, "organization"},
		{"plain http to a remote host", Config{BaseURL: "http://x.openai.azure.com", APIKey: testKey, AzureAPIVersion: "2024-10-21"}, "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Error("the error repeats the key")
			}
		})
	}
}
