package api_test

import (
	"net/http"
	"testing"
)

func TestModels(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.must(t, http.MethodPut, "/api/v1/vendors/openai", `{"location":"managed-service"}`, http.StatusCreated)
	s.must(t, http.MethodPut, "/api/v1/connectors/openai", `{"type":"openai","vendor":"openai","models":["gpt-4o-mini","gpt-4o"]}`, http.StatusCreated)
	s.must(t, http.MethodPut, "/api/v1/connectors/backup", `{"type":"anthropic","vendor":"openai"}`, http.StatusCreated)
	const fast = `{"description":"cheap first","chain":[{"connector":"openai","model":"gpt-4o-mini"},{"connector":"backup"}],` +
		`"environments":{"dev":[{"connector":"openai"}]}}`
	s.runScenarios(t, []scenario{
		{
			name: "list is empty at first", method: http.MethodGet, path: "/api/v1/models",
			wantStatus: http.StatusOK, wantContains: []string{`{"models":[]}`},
		},
		{
			name: "put creates", method: http.MethodPut, path: "/api/v1/models/fast", body: fast,
			wantStatus: http.StatusCreated, wantContains: []string{`"name":"fast"`, `"created":true`, `"connector":"backup"`},
		},
		{
			name: "the same put again is unchanged", method: http.MethodPut, path: "/api/v1/models/fast", body: fast,
			wantStatus: http.StatusOK, wantContains: []string{`"changed":false`},
		},
		{
			name: "a change is stored", method: http.MethodPut, path: "/api/v1/models/fast",
			body:       `{"chain":[{"connector":"backup"}]}`,
			wantStatus: http.StatusOK, wantContains: []string{`"changed":true`}, wantNotContains: []string{"gpt-4o-mini", "environments"},
		},
		{
			name: "get", method: http.MethodGet, path: "/api/v1/models/fast",
			wantStatus: http.StatusOK, wantContains: []string{`"chain":[{"connector":"backup"}]`},
		},
		{
			name: "list", method: http.MethodGet, path: "/api/v1/models",
			wantStatus: http.StatusOK, wantContains: []string{`{"models":[{"name":"fast"`},
		},
		{
			name: "a missing connector is named", method: http.MethodPut, path: "/api/v1/models/smart",
			body:       `{"chain":[{"connector":"openai"},{"connector":"claude"}]}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`no connector named \"claude\"`},
			after: wantLocations("body.chain[1].connector"),
		},
		{
			name: "every problem at its field", method: http.MethodPut, path: "/api/v1/models/smart",
			body:       `{"chain":[],"environments":{"prod":[{"model":"x"}],"Prod":[{"connector":"openai"}]}}`,
			wantStatus: http.StatusUnprocessableEntity,
			after:      wantLocations("body.chain", "body.environments.prod[0].connector", "body.environments"),
		},
		{
			name: "a model the connector does not offer", method: http.MethodPut, path: "/api/v1/models/smart",
			body:       `{"chain":[{"connector":"openai","model":"o1"}]}`,
			wantStatus: http.StatusUnprocessableEntity, after: wantLocations("body.chain[0].model"),
		},
		{
			name: "delete", method: http.MethodDelete, path: "/api/v1/models/fast",
			wantStatus: http.StatusNoContent,
		},
		{
			name: "deleted", method: http.MethodGet, path: "/api/v1/models/fast",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "the connector is free to delete now", method: http.MethodDelete, path: "/api/v1/connectors/backup",
			wantStatus: http.StatusNoContent,
		},
		{
			name: "no token", method: http.MethodGet, path: "/api/v1/models", token: noToken,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "no token to delete", method: http.MethodDelete, path: "/api/v1/models/fast", token: noToken,
			wantStatus: http.StatusUnauthorized,
		},
	})
}
