package api_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestProjects(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	var supportID string
	s.runScenarios(t, []scenario{
		{
			name: "list is empty at first", method: http.MethodGet, path: "/api/v1/projects",
			wantStatus: http.StatusOK, wantContains: []string{`{"projects":[]}`},
		},
		{
			name: "put creates", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `{"description":"Customer support"}`,
			wantStatus: http.StatusOK, wantContains: []string{`"name":"support"`, `"description":"Customer support"`, `"id":"prj`},
			after: func(t *testing.T, s *stack, res *response) {
				supportID, _ = res.JSON(t)["id"].(string)
			},
		},
		{
			name: "put with an empty object creates too", method: http.MethodPut, path: "/api/v1/projects/ops", body: `{}`,
			wantStatus: http.StatusOK, wantContains: []string{`"name":"ops"`},
		},
		{
			name: "put without a body is a clear 400", method: http.MethodPut, path: "/api/v1/projects/ops",
			wantStatus: http.StatusBadRequest, wantContains: []string{"request body is required"},
		},
		{
			name: "put again updates the description and keeps the id", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `{"description":"Support, level 1"}`,
			wantStatus: http.StatusOK, wantContains: []string{`"description":"Support, level 1"`},
			after: func(t *testing.T, s *stack, res *response) {
				if id := res.JSON(t)["id"]; id != supportID {
					t.Errorf("id changed: %v → %v", supportID, id)
				}
			},
		},
		{
			name: "get", method: http.MethodGet, path: "/api/v1/projects/support",
			wantStatus: http.StatusOK, wantContains: []string{`"name":"support"`, `"createdAt"`, `"updatedAt"`},
		},
		{
			name: "list names both", method: http.MethodGet, path: "/api/v1/projects",
			wantStatus: http.StatusOK, wantContains: []string{`"name":"ops"`, `"name":"support"`},
		},
		{
			name: "get unknown", method: http.MethodGet, path: "/api/v1/projects/nope",
			wantStatus: http.StatusNotFound, wantContains: []string{`"status":404`},
		},
		{
			name: "invalid name: upper case", method: http.MethodPut, path: "/api/v1/projects/Support", body: `{}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"path.project"`, "lower-case"},
		},
		{
			name: "invalid name: leading dash", method: http.MethodPut, path: "/api/v1/projects/-x", body: `{}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"path.project"`},
		},
		{
			name: "invalid name: escaped slash and dots", method: http.MethodPut, path: "/api/v1/projects/a%2F..%2Fb", body: `{}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"path.project"`},
		},
		{
			name: "invalid name: unicode", method: http.MethodPut, path: "/api/v1/projects/%C3%A9t%C3%A9", body: `{}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"path.project"`},
		},
		{
			name: "invalid name: too long", method: http.MethodPut, path: "/api/v1/projects/" + strings.Repeat("a", 64), body: `{}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"path.project"},
		},
		{
			name: "longest name is fine", method: http.MethodPut, path: "/api/v1/projects/" + strings.Repeat("a", 63), body: `{}`,
			wantStatus: http.StatusOK,
		},
		{
			name: "unknown field in the body", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `{"description":"x","owner":"mallory"}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"body.owner"`, "unexpected property"},
		},
		{
			name: "id in the body is refused, not taken", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `{"id":"prj_evil"}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{`"location":"body.id"`, "unexpected property"},
		},
		{
			name: "description of the wrong type", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `{"description":42}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.description"},
		},
		{
			name: "description too long", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `{"description":` + jsonString(strings.Repeat("x", 1001)) + `}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.description"},
		},
		{
			name: "malformed JSON", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `{"description":`,
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "body is not an object", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `["x"]`,
			wantStatus: http.StatusUnprocessableEntity,
		},
		{
			name: "body over 1 MiB", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       `{"description":"` + strings.Repeat("x", 1<<20) + `"}`,
			wantStatus: http.StatusRequestEntityTooLarge,
		},
		{
			name: "deeply nested body", method: http.MethodPut, path: "/api/v1/projects/support",
			body:       strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000),
			wantStatus: http.StatusUnprocessableEntity,
		},
		{
			name: "not JSON at all", method: http.MethodPut, path: "/api/v1/projects/support",
			body: "description=x", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			wantStatus: http.StatusUnsupportedMediaType,
		},
		{
			name: "nothing was changed by the refused requests", method: http.MethodGet, path: "/api/v1/projects/support",
			wantStatus: http.StatusOK, wantContains: []string{`"description":"Support, level 1"`},
		},
	})
}
