package nodes

import (
	"context"
	"fmt"
	"strconv"

	"github.com/moatproject/moat/internal/workflow"
)

// Switch routes the run to the first case whose condition holds.
type Switch struct{}

func (Switch) Name() string             { return "switch" }
func (Switch) Kind(map[string]any) Kind { return Inline }
func (Switch) Description() string {
	return "Route to the first case whose condition holds, or to the default; steps on the branches not taken are skipped."
}
func (Switch) Schema() map[string]any {
	return object([]string{"cases"}, map[string]any{
		"cases": map[string]any{
			"type":     "array",
			"minItems": 1,
			"maxItems": 64,
			"items": object([]string{"when", "next"}, map[string]any{
				"when": expression("CEL condition"),
				"next": str("id of the step to run when the condition holds"),
			}),
		},
		"default": str("id of the step to run when no case holds; without it the branch ends"),
	})
}

func switchCases(with map[string]any) (cases []map[string]any) {
	list, _ := with["cases"].([]any)
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			cases = append(cases, m)
		}
	}
	return cases
}

// Targets implements workflow.Brancher.
func (Switch) Targets(with map[string]any) []string {
	var targets []string
	for _, c := range switchCases(with) {
		if next, ok := c["next"].(string); ok {
			targets = append(targets, next)
		}
	}
	if def, ok := with["default"].(string); ok && def != "" {
		targets = append(targets, def)
	}
	return targets
}

// Expressions implements workflow.ExpressionFielder.
func (Switch) Expressions(with map[string]any) []workflow.ExprField {
	var fields []workflow.ExprField
	for i, c := range switchCases(with) {
		if when, ok := c["when"].(string); ok {
			fields = append(fields, workflow.ExprField{Pointer: "/cases/" + strconv.Itoa(i) + "/when", Source: when, Bool: true})
		}
	}
	return fields
}

// Execute picks the branch.
func (Switch) Execute(_ context.Context, c *Call) (Result, error) {
	for i, cs := range switchCases(c.With) {
		when, _ := cs["when"].(string)
		ok, err := c.Plan.EvalBool(when, c.Vars)
		if err != nil {
			return Result{}, fmt.Errorf("cases[%d].when: %w", i, err)
		}
		if ok {
			next, _ := cs["next"].(string)
			return Result{Output: map[string]any{"case": int64(i), "next": next}, Next: []string{next}}, nil
		}
	}
	if def, ok := c.With["default"].(string); ok && def != "" {
		return Result{Output: map[string]any{"case": "default", "next": def}, Next: []string{def}}, nil
	}
	return Result{Output: map[string]any{"case": nil, "next": nil}, Next: []string{}}, nil
}
