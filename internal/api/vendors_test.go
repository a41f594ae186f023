package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// wantLocations checks that a 422 answer locates a problem at each of
// locs, and at nothing else.
func wantLocations(locs ...string) func(t *testing.T, s *stack, res *response) {
	return func(t *testing.T, s *stack, res *response) {
		t.Helper()
		var p problemBody
		res.Decode(t, &p)
		got := p.locations()
		if len(got) != len(locs) {
			t.Fatalf("problems at %v, want %v\n%s", got, locs, p)
		}
		for _, want := range locs {
			found := false
			for _, g := range got {
				found = found || g == want
			}
			if !found {
				t.Errorf("no problem at %s in\n%s", want, p)
			}
		}
	}
}

func TestVendors(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	var createdAt string
	s.runScenarios(t, []scenario{
		{
			name: "list is empty at first", method: http.MethodGet, path: "/api/v1/vendors",
			wantStatus: http.StatusOK, wantContains: []string{`{"vendors":[]}`},
		},
		{
			name: "put creates", method: http.MethodPut, path: "/api/v1/vendors/openai",
			body:       `{"description":"OpenAI's API","location":"managed-service","region":"us","trainsOnCustomerData":false,"retentionDays":30}`,
			wantStatus: http.StatusCreated,
			wantContains: []string{`"name":"openai"`, `"location":"managed-service"`, `"retentionDays":30`, `"created":true`, `"changed":true`,
				`"hash":"`, `"createdAt":"`},
			after: func(t *testing.T, s *stack, res *response) {
				createdAt, _ = res.JSON(t)["createdAt"].(string)
			},
		},
		{
			name: "the same put again is unchanged", method: http.MethodPut, path: "/api/v1/vendors/openai",
			body:       `{"location":"managed-service","description":"OpenAI's API","region":"us","retentionDays":30,"name":"openai"}`,
			wantStatus: http.StatusOK, wantContains: []string{`"created":false`, `"changed":false`},
		},
		{
			name: "a change is stored", method: http.MethodPut, path: "/api/v1/vendors/openai",
			body:       `{"location":"managed-service","region":"eu","retentionDays":0}`,
			wantStatus: http.StatusOK, wantContains: []string{`"created":false`, `"changed":true`, `"region":"eu"`, `"retentionDays":0`},
			wantNotContains: []string{"OpenAI's API"},
			after: func(t *testing.T, s *stack, res *response) {
				if got := res.JSON(t)["createdAt"]; got != createdAt {
					t.Errorf("createdAt changed: %v → %v", createdAt, got)
				}
			},
		},
		{
			name: "get", method: http.MethodGet, path: "/api/v1/vendors/openai",
			wantStatus: http.StatusOK, wantContains: []string{`"name":"openai"`, `"region":"eu"`, `"updatedAt"`},
			wantNotContains: []string{`"changed"`, `"created"`},
		},
		{
			name: "a second vendor", method: http.MethodPut, path: "/api/v1/vendors/on-box",
			body:       `{"location":"on-premises","retentionDays":0}`,
			wantStatus: http.StatusCreated,
		},
		{
			name: "list by name", method: http.MethodGet, path: "/api/v1/vendors",
			wantStatus: http.StatusOK, wantContains: []string{`{"vendors":[{"name":"on-box"`, `"name":"openai"`},
		},
		{
			name: "every problem at its field", method: http.MethodPut, path: "/api/v1/vendors/bad",
			body:       `{"location":"moon","retentionDays":-7,"region":"` + strings.Repeat("r", 65) + `"}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"must be one of on-premises, private-cloud, managed-service"},
			after: wantLocations("body.location", "body.retentionDays", "body.region"),
		},
		{
			name: "unknown fields refused", method: http.MethodPut, path: "/api/v1/vendors/bad",
			body:       `{"location":"on-premises","Location":"x","trains":true}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"unknown field"},
			after: wantLocations("body.Location", "body.trains"),
		},
		{
			name: "wrong type located", method: http.MethodPut, path: "/api/v1/vendors/bad",
			body:       `{"location":"on-premises","retentionDays":"forever"}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"an integer"},
			after: wantLocations("body.retentionDays"),
		},
		{
			name: "not JSON", method: http.MethodPut, path: "/api/v1/vendors/bad", body: `{"location":`,
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "not an object", method: http.MethodPut, path: "/api/v1/vendors/bad", body: `["on-premises"]`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"expected object"},
		},
		{
			name: "a name other than the path's", method: http.MethodPut, path: "/api/v1/vendors/bad",
			body:       `{"name":"good","location":"on-premises"}`,
			wantStatus: http.StatusUnprocessableEntity, after: wantLocations("body.name"),
		},
		{
			name: "an invalid name", method: http.MethodPut, path: "/api/v1/vendors/Bad_Name",
			body:       `{"location":"on-premises"}`,
			wantStatus: http.StatusUnprocessableEntity, after: wantLocations("path.name"),
		},
		{
			name: "nothing was stored by the refused puts", method: http.MethodGet, path: "/api/v1/vendors/bad",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "a body over 1 MiB", method: http.MethodPut, path: "/api/v1/vendors/big",
			body:       `{"location":"on-premises","description":"` + strings.Repeat("d", 1<<20) + `"}`,
			wantStatus: http.StatusRequestEntityTooLarge,
		},
		{
			name: "a vendor in use is not deleted", method: http.MethodDelete, path: "/api/v1/vendors/openai",
			before: func(t *testing.T, s *stack) {
				s.must(t, http.MethodPut, "/api/v1/connectors/openai", `{"type":"openai","vendor":"openai"}`, http.StatusCreated)
			},
			wantStatus: http.StatusConflict, wantContains: []string{"Connector openai"},
		},
		{
			name: "delete", method: http.MethodDelete, path: "/api/v1/vendors/on-box",
			wantStatus: http.StatusNoContent,
		},
		{
			name: "deleted", method: http.MethodGet, path: "/api/v1/vendors/on-box",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "delete again", method: http.MethodDelete, path: "/api/v1/vendors/on-box",
			wantStatus: http.StatusNotFound,
		},
		{
			name: "no token", method: http.MethodGet, path: "/api/v1/vendors", token: noToken,
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "no token to put", method: http.MethodPut, path: "/api/v1/vendors/sneaky", token: noToken,
			body: `{"location":"on-premises"}`, wantStatus: http.StatusUnauthorized,
		},
		{
			name: "no token to delete", method: http.MethodDelete, path: "/api/v1/vendors/openai", token: noToken,
			wantStatus: http.StatusUnauthorized,
		},
	})
}
