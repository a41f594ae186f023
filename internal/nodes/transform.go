package nodes

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/moatproject/moat/internal/workflow"
)

// Transform builds an object whose fields are CEL expressions.
type Transform struct{}

func (Transform) Name() string             { return "transform" }
func (Transform) Kind(map[string]any) Kind { return Inline }
func (Transform) Description() string {
	return "Build an object from CEL expressions over the input and earlier steps."
}
func (Transform) Schema() map[string]any {
	return object([]string{"set"}, map[string]any{
		"set": map[string]any{
			"type":                 "object",
			"description":          "Output fields, each a CEL expression (no braces).",
			"minProperties":        1,
			"maxProperties":        256,
			"additionalProperties": expression("CEL expression"),
		},
	})
}

// Expressions implements workflow.ExpressionFielder.
func (Transform) Expressions(with map[string]any) []workflow.ExprField {
	set, _ := with["set"].(map[string]any)
	keys := slices.Sorted(maps.Keys(set))
	fields := make([]workflow.ExprField, 0, len(keys))
	for _, k := range keys {
		if src, ok := set[k].(string); ok {
			fields = append(fields, workflow.ExprField{Pointer: "/set/" + escapePointer(k), Source: src})
		}
	}
	return fields
}

// Execute evaluates every field.
func (Transform) Execute(_ context.Context, c *Call) (Result, error) {
	set, _ := c.With["set"].(map[string]any)
	out := make(map[string]any, len(set))
	for _, k := range slices.Sorted(maps.Keys(set)) {
		src, _ := set[k].(string)
		v, err := c.Plan.Eval(src, c.Vars)
		if err != nil {
			return Result{}, fmt.Errorf("set.%s: %w", k, err)
		}
		out[k] = v
	}
	return Result{Output: out}, nil
}

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '~':
			out = append(out, '~', '0')
		case '/':
			out = append(out, '~', '1')
		default:
			out = append(out, s[i])
		}
	}
	return string(out)
}
