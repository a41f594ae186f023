package nodes

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/moatproject/moat/internal/workflow"
)

const (
	maxForeachItems       = 1000
	defaultForeachItems   = 100
	maxForeachConcurrency = 16
)

// Foreach repeats a nested step for each item of a list, with a bounded
// fan-out. Its output is the list of the nested step's outputs, in order.
type Foreach struct {
	registry *Registry
}

func (Foreach) Name() string { return "foreach" }
func (Foreach) Description() string {
	return "Run a nested step once per item (item and index are in scope), at most maxItems items and concurrency at a time."
}
func (Foreach) Schema() map[string]any {
	return object([]string{"items", "step"}, map[string]any{
		"items":       orTemplate(map[string]any{"type": "array", "maxItems": maxForeachItems}),
		"maxItems":    map[string]any{"type": "integer", "minimum": 1, "maximum": maxForeachItems, "default": defaultForeachItems},
		"concurrency": map[string]any{"type": "integer", "minimum": 1, "maximum": maxForeachConcurrency, "default": 4},
		"step": object([]string{"uses"}, map[string]any{
			"uses": str("node type of the nested step"),
			"with": map[string]any{"type": "object"},
		}),
	})
}

func nestedStep(with map[string]any) (uses string, inner map[string]any) {
	step, _ := with["step"].(map[string]any)
	uses, _ = step["uses"].(string)
	inner, _ = step["with"].(map[string]any)
	return uses, inner
}

// Nested implements workflow.Container.
func (Foreach) Nested(with map[string]any) (workflow.Nested, bool) {
	uses, inner := nestedStep(with)
	if uses == "" {
		return workflow.Nested{}, false
	}
	return workflow.Nested{Pointer: "/step/with", Uses: uses, With: inner, Vars: []string{"item", "index"}}, true
}

// Kind is the nested step's kind: a foreach of HTTP requests is an effect.
func (f Foreach) Kind(with map[string]any) Kind {
	uses, inner := nestedStep(with)
	if n, ok := f.registry.Node(uses); ok {
		return n.Kind(inner)
	}
	return Inline
}

// Check implements workflow.SettingsChecker.
func (f Foreach) Check(with map[string]any) []workflow.FieldProblem {
	uses, inner := nestedStep(with)
	n, ok := f.registry.Node(uses)
	if !ok {
		return nil // the nested step's own validation names the unknown type
	}
	if _, ok := n.(Executor); !ok || n.Kind(inner) == Timer || n.Kind(inner) == Human {
		return []workflow.FieldProblem{{Pointer: "/step/uses", Message: fmt.Sprintf("foreach cannot repeat %q: waits and approvals are steps of their own", uses)}}
	}
	return nil
}

// Execute runs the nested step per item. For effects every item gets its own
// idempotency key derived from the attempt's.
func (f Foreach) Execute(ctx context.Context, c *Call) (Result, error) {
	items, ok := c.With["items"].([]any)
	if !ok {
		return Result{}, fmt.Errorf("items: want a list, got %T", c.With["items"])
	}
	limit := intSetting(c.With, "maxItems", defaultForeachItems)
	if len(items) > limit {
		return Result{}, fmt.Errorf("items: %d items, more than maxItems %d", len(items), limit)
	}
	uses, inner := nestedStep(c.With)
	n, _ := f.registry.Node(uses)
	exec, ok := n.(Executor)
	if !ok {
		return Result{}, fmt.Errorf("step: %q cannot run inside foreach", uses)
	}
	concurrency := 1
	if n.Kind(inner) == Effect {
		concurrency = intSetting(c.With, "concurrency", 4)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	outputs := make([]any, len(items))
	errs := make([]error, len(items))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, item := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			vars := itemVars(c.Vars, item, i)
			rendered, err := c.Plan.Render(inner, vars)
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			with, _ := rendered.(map[string]any)
			call := *c
			call.With, call.Vars = with, vars
			if c.IdempotencyKey != "" {
				call.IdempotencyKey = c.IdempotencyKey + "/" + strconv.Itoa(i)
			}
			res, err := exec.Execute(ctx, &call)
			if err != nil {
				errs[i] = err
				cancel()
				return
			}
			outputs[i] = res.Output
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return Result{}, fmt.Errorf("item %d: %w", i, err)
		}
	}
	return Result{Output: map[string]any{"items": outputs, "count": int64(len(outputs))}}, nil
}

func intSetting(with map[string]any, key string, def int) int {
	switch v := with[key].(type) {
	case int64:
		return int(v)
	case float64:
		return int(v)
	case int:
		return v
	}
	return def
}
