package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/store"
)

const refundYAML = `apiVersion: moat/v1
kind: Workflow
name: refund
project: money
input:
  schema:
    type: object
    required: [amount]
    properties:
      amount: {type: number}
steps:
  - id: review
    uses: approval
    with:
      title: "Refund {{ input.amount }} EUR"
      role: reviewer
      details: {amount: "{{ input.amount }}"}
  - id: pay
    uses: transform
    with:
      set:
        paid: steps.review.output.approved
        decision: steps.review.output.decision
`

// lenientRefund goes on after a rejection instead of failing the run.
var lenientRefund = strings.NewReplacer("name: refund", "name: lenient", "role: reviewer", "role: reviewer\n      onReject: continue").Replace(refundYAML)

type taskView struct {
	ID        string         `json:"id"`
	RunID     string         `json:"runId"`
	StepID    string         `json:"stepId"`
	Status    string         `json:"status"`
	Role      string         `json:"role"`
	Title     string         `json:"title"`
	Details   map[string]any `json:"details"`
	DecidedBy string         `json:"decidedBy"`
	Comment   string         `json:"comment"`
}

// pendingTask starts a run and returns the task its approval step raised.
func (s *stack) pendingTask(t *testing.T, workflow string, amount float64) (runID string, task taskView) {
	t.Helper()
	run := s.startRun(t, "money", workflow, map[string]any{"amount": amount})
	s.awaitRun(t, run.ID, func(r runView) bool { return r.Status == "waiting" })
	var l struct{ Tasks []taskView }
	s.must(t, http.MethodGet, "/api/v1/tasks?run="+run.ID, nil, http.StatusOK).Decode(t, &l)
	if len(l.Tasks) != 1 {
		t.Fatalf("run %s has %d pending tasks, want 1", run.ID, len(l.Tasks))
	}
	return run.ID, l.Tasks[0]
}

func TestTasksApprove(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "refund.yaml", refundYAML)
	runID, task := s.pendingTask(t, "refund", 42)
	if task.Status != "pending" || task.StepID != "review" || task.Role != "reviewer" || task.Title != "Refund 42 EUR" || task.Details["amount"] != float64(42) {
		t.Fatalf("task %+v", task)
	}
	s.set("task", task.ID)
	s.set("run", runID)
	s.runScenarios(t, []scenario{
		{
			name: "list pending tasks", method: http.MethodGet, path: "/api/v1/tasks",
			wantStatus: http.StatusOK, wantContains: []string{`"id":"{{task}}"`, `"status":"pending"`, `"details":{"amount":42}`},
		},
		{name: "by project", method: http.MethodGet, path: "/api/v1/tasks?project=money", wantStatus: http.StatusOK, wantContains: []string{task.ID}},
		{name: "by run", method: http.MethodGet, path: "/api/v1/tasks?run=" + runID, wantStatus: http.StatusOK, wantContains: []string{task.ID}},
		{name: "none approved yet", method: http.MethodGet, path: "/api/v1/tasks?status=approved", wantStatus: http.StatusOK, wantContains: []string{`{"tasks":[]}`}},
		{name: "another project has none", method: http.MethodGet, path: "/api/v1/tasks?project=other",
			before:     func(t *testing.T, s *stack) { s.must(t, http.MethodPut, "/api/v1/projects/other", `{}`, http.StatusOK) },
			wantStatus: http.StatusOK, wantContains: []string{`{"tasks":[]}`}},
		{name: "unknown project", method: http.MethodGet, path: "/api/v1/tasks?project=nope", wantStatus: http.StatusNotFound},
		{name: "unknown status", method: http.MethodGet, path: "/api/v1/tasks?status=maybe", wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"query.status"}},
		{name: "limit too large", method: http.MethodGet, path: "/api/v1/tasks?limit=100000", wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"query.limit"}},
		{name: "get the task", method: http.MethodGet, path: "/api/v1/tasks/" + task.ID, wantStatus: http.StatusOK,
			wantContains: []string{`"title":"Refund 42 EUR"`, `"runId":"` + runID + `"`}},
		{
			name: "comment too long", method: http.MethodPost, path: "/api/v1/tasks/" + task.ID + "/approve",
			body:       map[string]any{"comment": strings.Repeat("c", 2001)},
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.comment"},
		},
		{
			name: "unknown field in the decision", method: http.MethodPost, path: "/api/v1/tasks/" + task.ID + "/approve",
			body:       `{"comment":"ok","decidedBy":"ceo"}`,
			wantStatus: http.StatusUnprocessableEntity, wantContains: []string{"body.decidedBy"},
		},
		{
			name: "approve with a comment", method: http.MethodPost, path: "/api/v1/tasks/" + task.ID + "/approve",
			body:         `{"comment":"looks right"}`,
			wantStatus:   http.StatusOK,
			wantContains: []string{`"status":"approved"`, `"decidedBy":"bootstrap"`, `"comment":"looks right"`, `"decidedAt"`},
		},
		{
			name: "the run then succeeds", method: http.MethodGet, path: "/api/v1/runs/{{run}}?wait=5s",
			wantStatus: http.StatusOK, wantContains: []string{`"status":"succeeded"`, `"output":{"decision":"approved","paid":true}`},
		},
		{
			name: "approving twice is a conflict", method: http.MethodPost, path: "/api/v1/tasks/" + task.ID + "/approve", body: `{}`,
			wantStatus: http.StatusConflict, wantContains: []string{`"status":409`},
		},
		{
			name: "rejecting after approval is a conflict", method: http.MethodPost, path: "/api/v1/tasks/" + task.ID + "/reject", body: `{}`,
			wantStatus: http.StatusConflict,
		},
		{
			name: "the decision stands", method: http.MethodGet, path: "/api/v1/tasks/" + task.ID,
			wantStatus: http.StatusOK, wantContains: []string{`"status":"approved"`, `"comment":"looks right"`},
		},
		{name: "no task is pending any more", method: http.MethodGet, path: "/api/v1/tasks", wantStatus: http.StatusOK, wantContains: []string{`{"tasks":[]}`}},
		{name: "all shows it", method: http.MethodGet, path: "/api/v1/tasks?status=all", wantStatus: http.StatusOK, wantContains: []string{task.ID}},
		{name: "approved shows it", method: http.MethodGet, path: "/api/v1/tasks?status=approved", wantStatus: http.StatusOK, wantContains: []string{task.ID}},
		{name: "unknown task", method: http.MethodGet, path: "/api/v1/tasks/task_nope", wantStatus: http.StatusNotFound},
		{name: "approve an unknown task", method: http.MethodPost, path: "/api/v1/tasks/task_nope/approve", body: `{}`, wantStatus: http.StatusNotFound},
		{name: "reject an unknown task", method: http.MethodPost, path: "/api/v1/tasks/task_nope/reject", wantStatus: http.StatusNotFound},
		{name: "task id too long", method: http.MethodGet, path: "/api/v1/tasks/" + strings.Repeat("t", 65), wantStatus: http.StatusUnprocessableEntity},
	})
}

func TestTasksReject(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "refund.yaml", refundYAML)
	s.saveWorkflow(t, "lenient.yaml", lenientRefund)
	strictRun, strict := s.pendingTask(t, "refund", 500)
	lenientRun, lenient := s.pendingTask(t, "lenient", 7)

	// A second token decides under its own name.
	ctx := context.Background()
	err := s.Store.InTx(ctx, func(tx store.Tx) error {
		return tx.CreateToken(ctx, store.Token{ID: store.NewID("tok"), Name: "alice", Role: "reviewer", Hash: api.HashToken("alice-token"), CreatedAt: time.Now().UTC()})
	})
	if err != nil {
		t.Fatal(err)
	}

	s.runScenarios(t, []scenario{
		{
			name: "reject without a body", method: http.MethodPost, path: "/api/v1/tasks/" + strict.ID + "/reject", token: "alice-token",
			wantStatus: http.StatusOK, wantContains: []string{`"status":"rejected"`, `"decidedBy":"alice"`},
		},
		{
			name: "the run fails on rejection", method: http.MethodGet, path: "/api/v1/runs/" + strictRun + "?wait=5s",
			wantStatus: http.StatusOK, wantContains: []string{`"status":"failed"`, "reject"},
		},
		{
			name: "approving a rejected task is a conflict", method: http.MethodPost, path: "/api/v1/tasks/" + strict.ID + "/approve",
			wantStatus: http.StatusConflict,
		},
		{
			name: "reject with a comment; the run goes on", method: http.MethodPost, path: "/api/v1/tasks/" + lenient.ID + "/reject",
			body:       `{"comment":"not eligible"}`,
			wantStatus: http.StatusOK, wantContains: []string{`"status":"rejected"`, `"decidedBy":"bootstrap"`, `"comment":"not eligible"`},
		},
		{
			name: "the lenient run succeeds with the decision", method: http.MethodGet, path: "/api/v1/runs/" + lenientRun + "?wait=5s",
			wantStatus: http.StatusOK, wantContains: []string{`"status":"succeeded"`, `"decision":"rejected"`, `"paid":false`},
		},
		{
			name: "rejected lists both", method: http.MethodGet, path: "/api/v1/tasks?status=rejected",
			wantStatus: http.StatusOK, wantContains: []string{strict.ID, lenient.ID},
		},
	})
}

// TestTasksWithdrawnByCancel: cancelling a run withdraws its task.
func TestTasksWithdrawnByCancel(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.saveWorkflow(t, "refund.yaml", refundYAML)
	runID, task := s.pendingTask(t, "refund", 1)
	s.runScenarios(t, []scenario{
		{name: "cancel the run", method: http.MethodPost, path: "/api/v1/runs/" + runID + "/cancel", wantStatus: http.StatusOK},
		{name: "the task is withdrawn", method: http.MethodGet, path: "/api/v1/tasks/" + task.ID,
			wantStatus: http.StatusOK, wantContains: []string{`"status":"cancelled"`}},
		{name: "it is no longer pending", method: http.MethodGet, path: "/api/v1/tasks", wantStatus: http.StatusOK, wantContains: []string{`{"tasks":[]}`}},
		{name: "it cannot be approved", method: http.MethodPost, path: "/api/v1/tasks/" + task.ID + "/approve", wantStatus: http.StatusConflict},
		{name: "the run stays cancelled", method: http.MethodGet, path: "/api/v1/runs/" + runID, wantStatus: http.StatusOK, wantContains: []string{`"status":"cancelled"`}},
	})
}
