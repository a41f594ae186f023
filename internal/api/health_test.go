package api_test

import (
	"net/http"
	"testing"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.runScenarios(t, []scenario{
		{
			name: "healthz answers ok without a token", method: http.MethodGet, path: "/healthz", token: noToken,
			wantStatus: http.StatusOK, wantContains: []string{`"status":"ok"`},
			wantHeaders: map[string]string{"Content-Type": "application/json", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
		},
		{
			name: "readyz answers ready without a token", method: http.MethodGet, path: "/readyz", token: noToken,
			wantStatus: http.StatusOK, wantContains: []string{`"status":"ready"`},
		},
		{
			name: "healthz ignores a wrong token", method: http.MethodGet, path: "/healthz", token: "not-a-token",
			wantStatus: http.StatusOK,
		},
		{
			name: "healthz is GET only", method: http.MethodPost, path: "/healthz", token: noToken, body: "{}",
			wantStatus: http.StatusMethodNotAllowed,
		},
	})
}
