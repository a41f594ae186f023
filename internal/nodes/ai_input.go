package nodes

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/workflow"
)

// What an AI step's templates refer to decides how what they carry is
// treated: an instruction must not carry input the workflow declares
// untrusted, and a data item takes the class and trust of the input field
// it is. Both read the x-data-class and x-trust annotations of the input
// schema and the references of the templates, as written.

var dataNameRE = regexp.MustCompile(dataNamePattern)

// inputTrust answers what the input schema declares of a field.
type inputTrust struct {
	schema *workflow.InputSchema
}

func newInputTrust(in *workflow.Input) *inputTrust {
	return &inputTrust{schema: workflow.NewInputSchema(in)}
}

// instruction checks an instruction's template: it refuses one that refers
// to input declared untrusted (anywhere at or under the field it names),
// and returns Trusted only when the template holds nothing but the
// author's words, run facts and input declared trusted. Anything else may
// come from outside and is sent as untrusted, so the gateway scans it for
// injections.
func (t *inputTrust) instruction(field, tmpl string) (string, error) {
	exprs, _, err := workflow.TemplateExpressions(tmpl)
	if err != nil {
		return "", Permanent(fmt.Errorf("%s: %w", field, err))
	}
	trust := gateway.Trusted
	for _, src := range exprs {
		refs, err := expressionRefs(src)
		if err != nil {
			return "", Permanent(fmt.Errorf("%s: %w", field, err))
		}
		for _, p := range refs.input {
			if t.untrustedWithin(p) {
				return "", Permanent(fmt.Errorf("%s: %w: %s is declared x-trust: untrusted, and untrusted text must not be mixed into instructions; hand it to the model under data: instead",
					field, ErrUntrustedInstruction, pathName(p)))
			}
			if _, declared := t.declaredAt(p); declared != gateway.Trusted {
				trust = gateway.Untrusted
			}
		}
		for _, id := range refs.other {
			if id != "run" && id != "env" {
				trust = gateway.Untrusted
			}
		}
	}
	return trust, nil
}

// checkInstructions is the save-time form of instruction: every system,
// prompt and message template that names untrusted input is a problem, so
// such a workflow is refused before it ever runs.
func checkInstructions(with map[string]any, in *workflow.Input) []workflow.FieldProblem {
	t := newInputTrust(in)
	var problems []workflow.FieldProblem
	check := func(pointer string, raw any) {
		tmpl, ok := raw.(string)
		if !ok {
			return
		}
		if _, err := t.instruction(strings.TrimPrefix(pointer, "/"), tmpl); errors.Is(err, ErrUntrustedInstruction) {
			problems = append(problems, workflow.FieldProblem{Pointer: pointer, Message: strings.TrimPrefix(err.Error(), strings.TrimPrefix(pointer, "/")+": ")})
		}
	}
	check("/system", with["system"])
	check("/prompt", with["prompt"])
	if list, ok := with["messages"].([]any); ok {
		for i, e := range list {
			if m, ok := e.(map[string]any); ok {
				check(fmt.Sprintf("/messages/%d/content", i), m["content"])
			}
		}
	}
	return problems
}

// declared returns the class and trust the input schema declares for the
// field a data template is exactly ({{ input.a.b }}, optionally with
// .orValue(…) after an optional field); "" for a template that computes
// its value.
func (t *inputTrust) declared(field, tmpl string) (class, trust string, err error) {
	exprs, whole, err := workflow.TemplateExpressions(tmpl)
	if err != nil {
		return "", "", Permanent(fmt.Errorf("%s: %w", field, err))
	}
	if !whole {
		return "", "", nil
	}
	p, ok, err := singlePath(exprs[0])
	if err != nil {
		return "", "", Permanent(fmt.Errorf("%s: %w", field, err))
	}
	if !ok {
		return "", "", nil
	}
	class, trust = t.declaredAt(p)
	return class, trust, nil
}

// declaredAt is the nearest x-data-class at or above the path, and its
// trust: untrusted when any level declares it, else trusted when the
// nearest declaration says so.
func (t *inputTrust) declaredAt(path []string) (class, trust string) {
	return t.schema.Declared(path)
}

// untrustedWithin reports whether the value at path is, or holds, a field
// declared untrusted.
func (t *inputTrust) untrustedWithin(path []string) bool {
	if _, trust := t.declaredAt(path); trust == gateway.Untrusted {
		return true
	}
	levels := t.schema.Levels(path)
	budget := workflow.MaxSchemaNodes
	for _, n := range levels[len(levels)-1] {
		if t.holdsUntrusted(n, 0, &budget) {
			return true
		}
	}
	return false
}

// holdsUntrusted looks for x-trust: untrusted anywhere in a schema,
// following local $refs. Out of budget it answers true: fail closed.
func (t *inputTrust) holdsUntrusted(v any, depth int, budget *int) bool {
	*budget--
	if *budget < 0 || depth > workflow.MaxSchemaDepth {
		return true
	}
	switch x := v.(type) {
	case map[string]any:
		if x["x-trust"] == gateway.Untrusted {
			return true
		}
		for k, e := range x {
			switch k {
			case "const", "enum", "default", "examples":
				continue // data, not schemas
			case "$ref":
				if s, ok := e.(string); ok {
					if target, ok := t.schema.Resolve(s); ok && t.holdsUntrusted(target, depth+1, budget) {
						return true
					}
				}
				continue
			}
			if t.holdsUntrusted(e, depth+1, budget) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if t.holdsUntrusted(e, depth+1, budget) {
				return true
			}
		}
	}
	return false
}

func pathName(p []string) string {
	var b strings.Builder
	b.WriteString("input")
	for _, k := range p {
		if k == workflow.AnyItem {
			b.WriteString("[]")
		} else {
			b.WriteString(".")
			b.WriteString(k)
		}
	}
	return b.String()
}

// exprRefs is what one expression refers to: paths into the input (a path
// stops where a key is computed: all below it counts as referred to) and
// the other free identifiers.
type exprRefs struct {
	input [][]string
	other []string
}

// expressionRefs parses one expression and sorts its references into
// paths into the input and the other roots.
func expressionRefs(src string) (exprRefs, error) {
	all, err := workflow.ExpressionRefs(src)
	if err != nil {
		return exprRefs{}, err
	}
	var refs exprRefs
	for _, r := range all {
		switch {
		case r.Root == "input":
			refs.input = append(refs.input, r.Keys)
		case !slices.Contains(refs.other, r.Root):
			refs.other = append(refs.other, r.Root)
		}
	}
	return refs, nil
}

// singlePath returns the input path an expression is exactly: input.a.b,
// input["a"], input.?a.orValue(…).
func singlePath(src string) ([]string, bool, error) {
	r, ok, err := workflow.ExactReference(src)
	if err != nil || !ok || r.Root != "input" {
		return nil, false, err
	}
	return r.Keys, true, nil
}
