package nodes

import (
	"context"
	"fmt"

	"github.com/moatproject/moat/internal/workflow"
)

// Filter keeps the items of a list that satisfy a condition or, without a
// list, lets the run continue down this branch only when the condition holds.
type Filter struct{}

func (Filter) Name() string             { return "filter" }
func (Filter) Kind(map[string]any) Kind { return Inline }
func (Filter) Description() string {
	return "Keep the items for which a condition holds (item and index are in scope), or stop this branch when the condition is false."
}
func (Filter) Schema() map[string]any {
	return object([]string{"condition"}, map[string]any{
		"items":     orTemplate(map[string]any{"type": "array", "maxItems": maxForeachItems}),
		"condition": expression("CEL condition; with items, evaluated per item"),
	})
}

// Expressions implements workflow.ExpressionFielder.
func (Filter) Expressions(with map[string]any) []workflow.ExprField {
	src, _ := with["condition"].(string)
	f := workflow.ExprField{Pointer: "/condition", Source: src, Bool: true}
	if _, ok := with["items"]; ok {
		f.Vars = []string{"item", "index"}
	}
	return []workflow.ExprField{f}
}

// Execute applies the condition.
func (Filter) Execute(_ context.Context, c *Call) (Result, error) {
	cond, _ := c.With["condition"].(string)
	raw, hasItems := c.With["items"]
	if !hasItems {
		ok, err := c.Plan.EvalBool(cond, c.Vars)
		if err != nil {
			return Result{}, fmt.Errorf("condition: %w", err)
		}
		res := Result{Output: map[string]any{"passed": ok}}
		if !ok {
			res.Next = []string{}
		}
		return res, nil
	}
	items, ok := raw.([]any)
	if !ok {
		return Result{}, fmt.Errorf("items: want a list, got %T", raw)
	}
	if len(items) > maxForeachItems {
		return Result{}, fmt.Errorf("items: %d items, the limit is %d", len(items), maxForeachItems)
	}
	kept := make([]any, 0, len(items))
	for i, item := range items {
		ok, err := c.Plan.EvalBool(cond, itemVars(c.Vars, item, i))
		if err != nil {
			return Result{}, fmt.Errorf("condition for item %d: %w", i, err)
		}
		if ok {
			kept = append(kept, item)
		}
	}
	return Result{Output: map[string]any{"items": kept, "count": int64(len(kept))}}, nil
}

// itemVars adds item and index to a copy of vars.
func itemVars(vars workflow.Vars, item any, index int) workflow.Vars {
	v := make(workflow.Vars, len(vars)+2)
	for k, x := range vars {
		v[k] = x
	}
	v["item"] = item
	v["index"] = int64(index)
	return v
}
