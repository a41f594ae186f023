package api_test

import (
	"net/http"
	"testing"
)

func TestConnectors(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.must(t, http.MethodPut, "/api/v1/vendors/openai", `{"location":"managed-service","retentionDays":30}`, http.StatusCreated)
	s.must(t, http.MethodPut, "/api/v1/vendors/in-house", `{"location":"on-premises","retentionDays":0}`, http.StatusCreated)
	const openai = `{"type":"openai","vendor":"openai","baseURL":"https://api.openai.com/v1","credential":{"env":"OPENAI_API_KEY"},` +
		`"timeout":"60s","models":["gpt-4o-mini","gpt-4o"],"prices":{"gpt-4o-mini":{"input":0.15,"output":0.6}},` +
		`"limits":{"requestsPerMinute":60,"budgetUSD":10},"environments":{"prod":{"credential":{"env":"OPENAI_PROD_KEY"}}}}`
	s.runScenarios(t, []scenario{
		{
			name: "list is empty at first", method: http.MethodGet, path: "/api/v1/connectors",
			wantStatus: http.StatusOK, wantContains: []string{`{"connectors":[]}`},
		},
		{
			name: "put creates", method: http.MethodPut, path: "/api/v1/connectors/openai", body: openai,
			wantStatus: http.StatusCreated, wantContains: []string{`"name":"openai"`, `"type":"openai"`, `"created":true`, `"changed":true`},
		},
		{
			name: "the same put again is unchanged", method: http.MethodPut, path: "/api/v1/connectors/openai", body: openai,
			wantStatus: http.StatusOK, wantContains: []string{`"created":false`, `"changed":false`},
		},
		{
			name: "get shows the credential's variable name", method: http.MethodGet, path: "/api/v1/connectors/openai",
			wantStatus: http.StatusOK, wantContains: []string{`"credential":{"env":"OPENAI_API_KEY"}`, `"OPENAI_PROD_KEY"`, `"timeout":"60s"`},
		},
		{
			name: "an http connector with a free-form body template", method: http.MethodPut, path: "/api/v1/connectors/scorer",
			body: `{"type":"http","vendor":"in-house","credential":{"env":"SCORER_TOKEN","header":"X-Api-Key"},` +
				`"http":{"url":"https://scorer.internal/v1/score","headers":{"X-Team":"risk"},"body":{"text":"{{ prompt }}","top":12345678901234567},"response":"result.label"}}`,
			wantStatus: http.StatusCreated, wantContains: []string{`"response":"result.label"`, `"top":12345678901234567`},
		},
		{
			name: "a change is stored", method: http.MethodPut, path: "/api/v1/connectors/scorer",
			body:       `{"type":"http","vendor":"in-house","http":{"url":"https://scorer.internal/v2/score","response":"label"}}`,
			wantStatus: http.StatusOK, wantContains: []string{`"changed":true`, `/v2/score`},
		},
		{
			name: "list by name", method: http.MethodGet, path: "/api/v1/connectors",
			wantStatus: http.StatusOK, wantContains: []string{`{"connectors":[{"name":"openai"`, `"name":"scorer"`},
		},
		{
			name: "a missing vendor is named", method: http.MethodPut, path: "/api/v1/connectors/claude",
			body:       `{"type":"anthropic","vendor":"anthropic","credential":{"env":"ANTHROPIC_API_KEY"}}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`no vendor named \"anthropic\"`},
			after: wantLocations("body.vendor"),
		},
		{
			name: "every problem at its field", method: http.MethodPut, path: "/api/v1/connectors/bad",
			body: `{"type":"http","vendor":"in-house","credential":{"env":"lower-case"},"timeout":"1h",` +
				`"http":{"url":"ftp://x","headers":{"Authorization":"Bearer sk-literal-canary"},"response":""},"openai":{}}`,
			wantStatus: http.StatusUnprocessableEntity, wantNotContains: []string{"sk-literal-canary"},
			after: wantLocations("body.credential.env", "body.timeout", "body.http.url", "body.http.headers.Authorization",
				"body.http.response", "body.openai"),
		},
		{
			name: "unknown nested fields are refused", method: http.MethodPut, path: "/api/v1/connectors/bad",
			body:       `{"type":"openai","vendor":"openai","credential":{"env":"K","value":"x"},"environments":{"prod":{"baseurl":"https://x"}},"models":["a"]}`,
			wantStatus: http.StatusUnprocessableEntity,
			after:      wantLocations("body.credential.value", "body.environments.prod.baseurl"),
		},
		{
			name: "a replay recording a missing connector", method: http.MethodPut, path: "/api/v1/connectors/tape",
			body:       `{"type":"replay","vendor":"openai","replay":{"cassette":"tapes/a.json","record":"claude"}}`,
			wantStatus: http.StatusUnprocessableEntity, after: wantLocations("body.replay.record"),
		},
		{
			name: "a replay recording openai", method: http.MethodPut, path: "/api/v1/connectors/tape",
			body:       `{"type":"replay","vendor":"openai","replay":{"cassette":"tapes/a.json","record":"openai"}}`,
			wantStatus: http.StatusCreated,
		},
		{
			name: "a connector recorded by a replay is not deleted", method: http.MethodDelete, path: "/api/v1/connectors/openai",
			wantStatus: http.StatusConflict, wantContains: []string{"Connector tape"},
		},
		{
			name: "a change that breaks another resource is refused", method: http.MethodPut, path: "/api/v1/connectors/openai",
			before: func(t *testing.T, s *stack) {
				s.must(t, http.MethodPut, "/api/v1/models/fast", `{"chain":[{"connector":"openai","model":"gpt-4o-mini"}]}`, http.StatusCreated)
			},
			body:       `{"type":"openai","vendor":"openai","models":["gpt-4o"]}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"Model fast: chain[0].model"},
			after: wantLocations("body"),
		},
		{
			name: "a connector used by a model is not deleted", method: http.MethodDelete, path: "/api/v1/connectors/openai",
			before: func(t *testing.T, s *stack) {
				s.must(t, http.MethodDelete, "/api/v1/connectors/tape", nil, http.StatusNoContent)
			},
			wantStatus: http.StatusConflict, wantContains: []string{"Model fast"},
		},
		{
			name: "delete", method: http.MethodDelete, path: "/api/v1/connectors/scorer",
			wantStatus: http.StatusNoContent,
		},
		{
			name: "deleted", method: http.MethodGet, path: "/api/v1/connectors/scorer",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "no token", method: http.MethodGet, path: "/api/v1/connectors/openai", token: noToken,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "no token to put", method: http.MethodPut, path: "/api/v1/connectors/sneaky", token: noToken,
			body: `{"type":"openai","vendor":"openai"}`, wantStatus: http.StatusUnauthorized,
		},
	})
}
