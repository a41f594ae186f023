package api_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestServerRouting(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.runScenarios(t, []scenario{
		{
			name: "unknown path is a problem 404", method: http.MethodGet, path: "/api/v1/secret-admin",
			wantStatus: http.StatusNotFound, wantContains: []string{`"status":404`, "/api/openapi.json"},
		},
		{
			name: "the root page needs no token and shows no data", method: http.MethodGet, path: "/", token: noToken,
			wantStatus: http.StatusOK, wantContains: []string{"bootstrap.token", "/api/openapi.json"},
			wantHeaders: map[string]string{"Content-Security-Policy": "default-src 'none'"},
		},
		{
			name: "an unknown page is a problem 404", method: http.MethodGet, path: "/nowhere",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "wrong method is a problem 405", method: http.MethodDelete, path: "/api/v1/projects",
			wantStatus: http.StatusMethodNotAllowed, wantContains: []string{`"status":405`, "DELETE"},
			wantHeaders: map[string]string{"Allow": "GET"},
		},
		{
			name: "security headers on every answer", method: http.MethodGet, path: "/api/v1/projects", token: noToken,
			wantStatus: http.StatusUnauthorized,
			wantHeaders: map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
				"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"},
		},
		{
			name: "and on successes", method: http.MethodGet, path: "/api/v1/projects",
			wantStatus:  http.StatusOK,
			wantHeaders: map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Content-Type": "application/json"},
		},
		{
			name: "no docs page pulling scripts from a CDN", method: http.MethodGet, path: "/docs",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "bodies carry no $schema links", method: http.MethodGet, path: "/api/v1/projects",
			wantStatus: http.StatusOK, wantNotContains: []string{"$schema"},
		},
	})
}

// TestHostileInput throws malformed, oversized and hostile bodies and
// parameters at every operation that reads them: each is answered with a
// clear problem, never a server error.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "greet.yaml", greetV1)
	s.saveWorkflow(t, "ticket-triage.yaml", example(t, "ticket-triage.yaml"))
	bodies := map[string]string{
		"not JSON":            `hello`,
		"truncated":           `{"a":`,
		"null":                `null`,
		"array":               `[]`,
		"string":              `"x"`,
		"number":              `1e999`,
		"NUL bytes":           "{\"a\":\"\x00\"}\x00",
		"byte order mark":     "\xef\xbb\xbf{}",
		"deep arrays":         strings.Repeat("[", 200000) + strings.Repeat("]", 200000),
		"deep objects":        strings.Repeat(`{"a":`, 50000) + "1" + strings.Repeat("}", 50000),
		"many keys":           "{" + strings.Repeat(`"k":1,`, 100000) + `"k":1}`,
		"over 1 MiB":          `{"a":"` + strings.Repeat("x", 1<<20+10) + `"}`,
		"two documents":       `{}{}`,
		"huge integer":        `{"version":123456789012345678901234567890}`,
		"wrong types":         `{"source":1,"input":2,"description":3,"comment":4,"version":"x"}`,
		"prototype pollution": `{"__proto__":{"admin":true},"constructor":{"prototype":{}}}`,
	}
	targets := []struct{ method, path string }{
		{http.MethodPut, "/api/v1/projects/hostile"},
		{http.MethodPost, "/api/v1/workflows"},
		{http.MethodPost, "/api/v1/projects/wfp/workflows/greet/runs"},
		{http.MethodPost, "/api/v1/runs/run_x/cancel"},
		{http.MethodPost, "/api/v1/tasks/task_x/approve"},
		{http.MethodPost, "/api/v1/tasks/task_x/reject"},
		{http.MethodPost, "/hooks/tickets"},
	}
	for _, target := range targets {
		for name, body := range bodies {
			t.Run(target.method+" "+target.path+" "+name, func(t *testing.T) {
				res := s.do(t, target.method, target.path, "", body, nil)
				if res.Status < 400 || res.Status >= 500 {
					t.Errorf("status %d, want a 4xx problem\n%s", res.Status, trim(res.Body))
				}
				if res.Status >= 400 && !strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
					t.Errorf("status %d with Content-Type %q", res.Status, res.Header.Get("Content-Type"))
				}
			})
		}
	}
	params := []string{
		"/api/v1/runs?limit=1e9", "/api/v1/runs?limit=99999999999999999999", "/api/v1/runs?status=%00",
		"/api/v1/runs?project=%27%20OR%201%3D1%20--", "/api/v1/runs?project=x&workflow=%27%3B%20DROP%20TABLE%20runs%3B--",
		"/api/v1/runs?project=" + strings.Repeat("p", 5000), "/api/v1/runs/%00", "/api/v1/runs/..%2F..%2Fetc%2Fpasswd",
		"/api/v1/runs/x?wait=1%00s", "/api/v1/tasks?run=" + strings.Repeat("r", 65), "/api/v1/tasks?limit=-5",
		"/api/v1/projects/%00", "/api/v1/projects/wfp/workflows/%2e%2e", "/api/v1/projects/wfp/workflows/greet/versions/-1",
		"/api/v1/projects/wfp/workflows/greet/versions/1.5",
	}
	for _, path := range params {
		t.Run("GET "+path[:min(len(path), 80)], func(t *testing.T) {
			res := s.do(t, http.MethodGet, path, "", nil, nil)
			if res.Status < 400 || res.Status >= 500 {
				t.Errorf("status %d\n%s", res.Status, trim(res.Body))
			}
		})
	}
	t.Run("the greet workflow is untouched", func(t *testing.T) {
		s.must(t, http.MethodGet, "/api/v1/projects/wfp/workflows/greet", nil, http.StatusOK)
	})
}
