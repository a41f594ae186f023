package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	unauthorized := []string{`"status":401`, `"title":"Unauthorized"`}
	s.runScenarios(t, []scenario{
		{
			name: "no token", method: http.MethodGet, path: "/api/v1/projects", token: noToken,
			wantStatus:   http.StatusUnauthorized,
			wantContains: append(unauthorized, "missing bearer token", "Authorization: Bearer"),
			wantHeaders:  map[string]string{"WWW-Authenticate": `Bearer realm="moat"`, "Content-Type": "application/problem+json"},
		},
		{
			name: "wrong token", method: http.MethodGet, path: "/api/v1/projects", token: "moat_wrong",
			wantStatus: http.StatusUnauthorized, wantContains: append(unauthorized, "invalid bearer token"),
			wantHeaders: map[string]string{"WWW-Authenticate": "Bearer"},
		},
		{
			name: "empty bearer", method: http.MethodGet, path: "/api/v1/projects", token: noToken,
			headers:    map[string]string{"Authorization": "Bearer "},
			wantStatus: http.StatusUnauthorized, wantContains: []string{"missing bearer token"},
		},
		{
			name: "basic credentials are not a token", method: http.MethodGet, path: "/api/v1/projects", token: noToken,
			headers:    map[string]string{"Authorization": "Basic Ym9vdHN0cmFwOnNlY3JldA=="},
			wantStatus: http.StatusUnauthorized, wantContains: []string{"missing bearer token"},
		},
		{
			name: "token sent without scheme", method: http.MethodGet, path: "/api/v1/projects", token: noToken,
			headers:    map[string]string{"Authorization": bootstrapToken},
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "hostile header value", method: http.MethodGet, path: "/api/v1/projects", token: noToken,
			headers:    map[string]string{"Authorization": "Bearer " + strings.Repeat("A", 16<<10)},
			wantStatus: http.StatusUnauthorized, wantContains: []string{"invalid bearer token"},
		},
		{
			name: "good token", method: http.MethodGet, path: "/api/v1/projects",
			wantStatus: http.StatusOK, wantContains: []string{`"projects":[]`},
		},
		{
			name: "scheme is case-insensitive (RFC 9110 §11.1)", method: http.MethodGet, path: "/api/v1/projects", token: noToken,
			headers:    map[string]string{"Authorization": "bearer " + bootstrapToken},
			wantStatus: http.StatusOK,
		},
		{
			name: "surrounding spaces are ignored", method: http.MethodGet, path: "/api/v1/projects", token: noToken,
			headers:    map[string]string{"Authorization": "Bearer   " + bootstrapToken + "  "},
			wantStatus: http.StatusOK,
		},
		{name: "healthz is open", method: http.MethodGet, path: "/healthz", token: noToken, wantStatus: http.StatusOK},
		{name: "readyz is open", method: http.MethodGet, path: "/readyz", token: noToken, wantStatus: http.StatusOK},
		{
			name: "openapi is open", method: http.MethodGet, path: "/api/openapi.json", token: noToken,
			wantStatus: http.StatusOK, wantContains: []string{`"openapi":"3.1.0"`},
		},
		{name: "openapi yaml is open", method: http.MethodGet, path: "/api/openapi.yaml", token: noToken, wantStatus: http.StatusOK},
		{
			name: "hooks need a token", method: http.MethodPost, path: "/hooks/tickets", token: noToken, body: `{}`,
			wantStatus: http.StatusUnauthorized, wantHeaders: map[string]string{"WWW-Authenticate": "Bearer"},
		},
		{
			name: "hooks refuse a wrong token", method: http.MethodPost, path: "/hooks/tickets", token: "nope", body: `{}`,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "unknown path is denied before it is routed", method: http.MethodGet, path: "/api/v1/secret-admin", token: noToken,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "public path prefix tricks do not bypass auth", method: http.MethodGet, path: "/api/openapi.json/../v1/projects", token: noToken,
			wantStatus: http.StatusUnauthorized,
		},
	})
}

// TestOpenAPI checks the published description: OpenAPI 3.1, a bearer
// scheme, and exactly the /api/v1 operations the server has.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	res := s.do(t, http.MethodGet, "/api/openapi.json", noToken, nil, nil)
	if res.Status != http.StatusOK {
		t.Fatalf("status %d", res.Status)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Comps   struct {
			SecuritySchemes map[string]struct {
				Type   string `json:"type"`
				Scheme string `json:"scheme"`
			} `json:"securitySchemes"`
		} `json:"components"`
		Security []map[string][]string `json:"security"`
	}
	res.Decode(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	if b := doc.Comps.SecuritySchemes["bearer"]; b.Type != "http" || b.Scheme != "bearer" {
		t.Errorf("bearer security scheme = %+v", b)
	}
	if len(doc.Security) == 0 || doc.Security[0]["bearer"] == nil {
		t.Errorf("global security = %v, want bearer", doc.Security)
	}
	want := []string{
		"GET /api/v1/projects",
		"GET /api/v1/projects/{project}",
		"PUT /api/v1/projects/{project}",
		"GET /api/v1/projects/{project}/workflows",
		"GET /api/v1/projects/{project}/workflows/{name}",
		"GET /api/v1/projects/{project}/workflows/{name}/versions/{number}",
		"POST /api/v1/projects/{project}/workflows/{name}/runs",
		"POST /api/v1/workflows",
		"GET /api/v1/runs",
		"GET /api/v1/runs/{id}",
		"POST /api/v1/runs/{id}/cancel",
		"GET /api/v1/tasks",
		"GET /api/v1/tasks/{id}",
		"POST /api/v1/tasks/{id}/approve",
		"POST /api/v1/tasks/{id}/reject",
		"GET /api/v1/vendors",
		"GET /api/v1/vendors/{name}",
		"PUT /api/v1/vendors/{name}",
		"DELETE /api/v1/vendors/{name}",
		"GET /api/v1/connectors",
		"GET /api/v1/connectors/{name}",
		"PUT /api/v1/connectors/{name}",
		"DELETE /api/v1/connectors/{name}",
		"GET /api/v1/models",
		"GET /api/v1/models/{name}",
		"PUT /api/v1/models/{name}",
		"DELETE /api/v1/models/{name}",
		"GET /api/v1/projects/{project}/workflows/{name}/flow",
		"GET /api/v1/flow/vendors",
	}
	var got []string
	for path, ops := range doc.Paths {
		if !strings.HasPrefix(path, "/api/v1/") {
			continue
		}
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch":
				got = append(got, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("/api/v1 operations in the description:\n got  %v\n want %v", got, want)
	}
	// Every operation answers problems as described.
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			if !strings.Contains(string(raw), "application/problem+json") {
				t.Errorf("%s %s documents no problem+json answer", method, path)
			}
		}
	}
}
