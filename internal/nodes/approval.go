package nodes

import (
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/workflow"
)

const defaultApprovalTimeout = 72 * time.Hour

// Approval raises a human task and waits, durably, until someone approves or
// rejects it through the API or CLI, or until it times out.
type Approval struct{}

func (Approval) Name() string { return "approval" }

// Waits implements workflow.Waiter.
func (Approval) Waits() bool { return true }

func (Approval) Kind(map[string]any) Kind { return Human }
func (Approval) Description() string {
	return "Ask a person to approve or reject; the run waits durably for the decision or the timeout."
}
func (Approval) Schema() map[string]any {
	return object(nil, map[string]any{
		"title":     str("what the reviewer is asked to decide (may use templates)"),
		"role":      str("who may decide, e.g. reviewer"),
		"details":   map[string]any{"description": "data shown to the reviewer (templates allowed)"},
		"timeout":   orTemplate(durationSchema("how long to wait for a decision; default 72h")),
		"onReject":  map[string]any{"type": "string", "enum": []any{"fail", "continue"}, "default": "fail", "description": "fail the run, or continue with output.decision = rejected"},
		"onTimeout": map[string]any{"type": "string", "enum": []any{"fail", "continue"}, "default": "fail", "description": "fail the run, or continue with output.decision = expired"},
	})
}

// TaskSpec is the task an approval step raises.
type TaskSpec struct {
	Title     string
	Role      string
	Details   any
	Timeout   time.Duration
	OnReject  string
	OnTimeout string
}

// Task reads the rendered settings.
func (Approval) Task(step *workflow.PlanStep, with map[string]any) (TaskSpec, error) {
	spec := TaskSpec{Timeout: defaultApprovalTimeout, OnReject: "fail", OnTimeout: "fail"}
	spec.Title, _ = with["title"].(string)
	if spec.Title == "" {
		spec.Title = "Approve step " + step.ID
	}
	spec.Role, _ = with["role"].(string)
	spec.Details = with["details"]
	if s, ok := with["timeout"].(string); ok {
		d, err := workflow.ParseDuration(s)
		if err != nil {
			return spec, fmt.Errorf("timeout: %w", err)
		}
		if d <= 0 || d > maxWait {
			return spec, fmt.Errorf("timeout: %s is outside (0, %s]", s, maxWait)
		}
		spec.Timeout = d
	}
	if s, ok := with["onReject"].(string); ok {
		spec.OnReject = s
	}
	if s, ok := with["onTimeout"].(string); ok {
		spec.OnTimeout = s
	}
	return spec, nil
}
