package nodes

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/workflow"
)

// What an AI step's templates refer to decides how what they carry is
// treated: an instruction must not carry input the workflow declares
// untrusted, and a data item takes the class and trust of the input field
// it is. Both read the x-data-class and x-trust annotations of the input
// schema and the references of the templates, as written.

// anyItem stands for an element of a list in a path.
const anyItem = "\x00[]"

// Bounds on walking an input schema: it was checked when it was saved, but
// $ref may loop.
const (
	maxSchemaNodes = 4096
	maxSchemaDepth = 64
)

var dataNameRE = regexp.MustCompile(dataNamePattern)

// inputTrust answers what the input schema declares of a field.
type inputTrust struct {
	root map[string]any // nil without an input schema
}

func newInputTrust(in *workflow.Input) *inputTrust {
	if in == nil {
		return &inputTrust{}
	}
	return &inputTrust{root: in.Schema}
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
	levels := t.levels(path)
	for i := len(levels) - 1; i >= 0; i-- {
		for _, n := range levels[i] {
			if c, _ := n["x-data-class"].(string); c != "" && class == "" {
				class = c
			}
			switch n["x-trust"] {
			case gateway.Untrusted:
				trust = gateway.Untrusted
			case gateway.Trusted:
				if trust == "" {
					trust = gateway.Trusted
				}
			}
		}
	}
	return class, trust
}

// untrustedWithin reports whether the value at path is, or holds, a field
// declared untrusted.
func (t *inputTrust) untrustedWithin(path []string) bool {
	if _, trust := t.declaredAt(path); trust == gateway.Untrusted {
		return true
	}
	levels := t.levels(path)
	budget := maxSchemaNodes
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
	if *budget < 0 || depth > maxSchemaDepth {
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
					if target, ok := t.ref(s); ok && t.holdsUntrusted(target, depth+1, budget) {
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

// levels returns, for the root and each step of path, the schemas that
// describe the value there.
func (t *inputTrust) levels(path []string) [][]map[string]any {
	budget := maxSchemaNodes
	var cur []map[string]any
	if t.root != nil {
		cur = t.expand(t.root, 0, &budget, nil)
	}
	out := [][]map[string]any{cur}
	for _, key := range path {
		var next []map[string]any
		for _, n := range cur {
			for _, s := range childSchemas(n, key) {
				next = t.expand(s, 0, &budget, next)
			}
		}
		cur = next
		out = append(out, cur)
	}
	return out
}

// expand adds a schema and those it is combined with (allOf, anyOf, oneOf,
// $ref): each may annotate the same value.
func (t *inputTrust) expand(n map[string]any, depth int, budget *int, out []map[string]any) []map[string]any {
	*budget--
	if *budget < 0 || depth > maxSchemaDepth {
		return out
	}
	for _, seen := range out {
		if reflect.ValueOf(seen).UnsafePointer() == reflect.ValueOf(n).UnsafePointer() {
			return out
		}
	}
	out = append(out, n)
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		list, _ := n[k].([]any)
		for _, e := range list {
			if m, ok := e.(map[string]any); ok {
				out = t.expand(m, depth+1, budget, out)
			}
		}
	}
	if s, ok := n["$ref"].(string); ok {
		if target, ok := t.ref(s); ok {
			out = t.expand(target, depth+1, budget, out)
		}
	}
	return out
}

// ref resolves a reference within the input schema ("#/$defs/x").
func (t *inputTrust) ref(s string) (map[string]any, bool) {
	if t.root == nil || (s != "#" && !strings.HasPrefix(s, "#/")) {
		return nil, false
	}
	var v any = t.root
	for _, tok := range strings.Split(strings.TrimPrefix(strings.TrimPrefix(s, "#"), "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		v = m[tok]
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// childSchemas are the schemas of a field or list element of a value
// described by n.
func childSchemas(n map[string]any, key string) []map[string]any {
	var out []map[string]any
	add := func(v any) {
		if m, ok := v.(map[string]any); ok {
			out = append(out, m)
		}
	}
	if key == anyItem {
		add(n["items"])
		if list, ok := n["prefixItems"].([]any); ok {
			for _, e := range list {
				add(e)
			}
		}
		return out
	}
	props, _ := n["properties"].(map[string]any)
	if p, ok := props[key]; ok {
		add(p)
		return out
	}
	matched := false
	if pats, ok := n["patternProperties"].(map[string]any); ok {
		for pat, s := range pats {
			re, err := regexp.Compile(pat)
			if err != nil || re.MatchString(key) {
				add(s) // a pattern Go cannot read may match: take its annotations
				matched = true
			}
		}
	}
	if !matched {
		add(n["additionalProperties"])
	}
	return out
}

func pathName(p []string) string {
	var b strings.Builder
	b.WriteString("input")
	for _, k := range p {
		if k == anyItem {
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

var refEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(cel.OptionalTypes(), cel.ParserExpressionSizeLimit(workflow.MaxExprBytes))
})

func parseExpr(src string) (celast.Expr, error) {
	if len(src) > workflow.MaxExprBytes {
		return nil, fmt.Errorf("an expression is longer than %d bytes", workflow.MaxExprBytes)
	}
	env, err := refEnv()
	if err != nil {
		return nil, err
	}
	a, iss := env.Parse(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("the expression does not parse: %w", iss.Err())
	}
	return a.NativeRep().Expr(), nil
}

// expressionRefs parses one expression and collects its references.
func expressionRefs(src string) (exprRefs, error) {
	e, err := parseExpr(src)
	if err != nil {
		return exprRefs{}, err
	}
	w := &refWalker{shadow: map[string]int{}}
	w.walk(e)
	return w.refs, nil
}

// singlePath returns the input path an expression is exactly: input.a.b,
// input["a"], input.?a.orValue(…).
func singlePath(src string) ([]string, bool, error) {
	e, err := parseExpr(src)
	if err != nil {
		return nil, false, err
	}
	if e.Kind() == celast.CallKind {
		if c := e.AsCall(); c.IsMemberFunction() && c.FunctionName() == "orValue" && len(c.Args()) == 1 && c.Args()[0].Kind() == celast.LiteralKind {
			e = c.Target()
		}
	}
	w := &refWalker{shadow: map[string]int{}}
	p, ok := w.path(e)
	if !ok || !p.open || len(w.refs.input)+len(w.refs.other) > 0 {
		return nil, false, nil
	}
	return p.keys, true, nil
}

type refWalker struct {
	shadow map[string]int
	refs   exprRefs
}

// refPath is a path into the input; it is closed once a key is computed.
type refPath struct {
	keys []string
	open bool
}

func (p refPath) with(key string) refPath {
	if !p.open {
		return p
	}
	return refPath{keys: append(slices.Clip(p.keys), key), open: true}
}

// path reads a chain of selections and constant indexes rooted at a free
// `input`.
func (w *refWalker) path(e celast.Expr) (refPath, bool) {
	switch e.Kind() {
	case celast.IdentKind:
		if e.AsIdent() == "input" && w.shadow["input"] == 0 {
			return refPath{keys: []string{}, open: true}, true
		}
	case celast.SelectKind:
		s := e.AsSelect()
		p, ok := w.path(s.Operand())
		if ok {
			return p.with(s.FieldName()), true
		}
	case celast.CallKind:
		c := e.AsCall()
		args := c.Args()
		if c.IsMemberFunction() || len(args) != 2 {
			break
		}
		switch c.FunctionName() {
		case "_[_]", "_[?_]", "_?._":
			p, ok := w.path(args[0])
			if !ok {
				break
			}
			if args[1].Kind() == celast.LiteralKind {
				switch k := args[1].AsLiteral().(type) {
				case types.String:
					return p.with(string(k)), true
				case types.Int, types.Uint:
					return p.with(anyItem), true
				}
			}
			w.walk(args[1])
			p.open = false
			return p, true
		}
	}
	return refPath{}, false
}

func (w *refWalker) walk(e celast.Expr) {
	if e == nil {
		return
	}
	if p, ok := w.path(e); ok {
		w.refs.input = append(w.refs.input, p.keys)
		return
	}
	switch e.Kind() {
	case celast.IdentKind:
		if id := e.AsIdent(); w.shadow[id] == 0 && !slices.Contains(w.refs.other, id) {
			w.refs.other = append(w.refs.other, id)
		}
	case celast.SelectKind:
		w.walk(e.AsSelect().Operand())
	case celast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			w.walk(c.Target())
		}
		for _, a := range c.Args() {
			w.walk(a)
		}
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			w.walk(el)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			w.walk(me.Key())
			w.walk(me.Value())
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			w.walk(f.AsStructField().Value())
		}
	case celast.ComprehensionKind:
		c := e.AsComprehension()
		w.walk(c.IterRange())
		w.walk(c.AccuInit())
		inner := []string{c.IterVar(), c.AccuVar()}
		if c.HasIterVar2() {
			inner = append(inner, c.IterVar2())
		}
		for _, v := range inner {
			w.shadow[v]++
		}
		w.walk(c.LoopCondition())
		w.walk(c.LoopStep())
		w.walk(c.Result())
		for _, v := range inner {
			w.shadow[v]--
		}
	}
}
