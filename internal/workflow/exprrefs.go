package workflow

import (
	"fmt"
	"slices"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// What an expression refers to, read from its source alone: the nodes use
// it to see which input an AI step's instruction carries, and governance to
// follow data from the input through the steps. Both need the same rules,
// so they read references here: a path into a value stops where a key is
// computed, and everything below it counts as read.

// AnyItem stands for an element of a list in a path; no field name holds a
// NUL, so it cannot be taken for one.
const AnyItem = "\x00[]"

// Reference is one value an expression reads: a free variable (input,
// steps, run, …) and the constant keys below it. A reference that is not
// Open had a key computed at run time, so it reads everything below Keys.
type Reference struct {
	Root string
	Keys []string
	Open bool
}

func (r Reference) with(key string) Reference {
	if !r.Open {
		return r
	}
	return Reference{Root: r.Root, Keys: append(slices.Clip(r.Keys), key), Open: true}
}

// refEnv only parses, so it declares no variables: every free identifier
// is left for the walk to find.
var refEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(cel.OptionalTypes(), cel.ParserExpressionSizeLimit(MaxExprBytes))
})

func parseRefExpr(src string) (celast.Expr, error) {
	if len(src) > MaxExprBytes {
		return nil, fmt.Errorf("workflow: an expression is longer than %d bytes", MaxExprBytes)
	}
	env, err := refEnv()
	if err != nil {
		return nil, fmt.Errorf("workflow: expression environment: %w", err)
	}
	a, iss := env.Parse(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("workflow: the expression does not parse: %w", iss.Err())
	}
	return a.NativeRep().Expr(), nil
}

// ExpressionRefs parses one expression and returns every value it reads,
// in the order they appear. Variables bound by a comprehension are not
// references.
func ExpressionRefs(src string) ([]Reference, error) {
	e, err := parseRefExpr(src)
	if err != nil {
		return nil, err
	}
	w := &refWalker{shadow: map[string]int{}}
	w.walk(e)
	return w.refs, nil
}

// ExactReference returns the value an expression is exactly, with nothing
// computed from it: input.a.b, input["a"], input.?a.orValue(…). A data
// item written so takes what the input schema declares at that path.
func ExactReference(src string) (Reference, bool, error) {
	e, err := parseRefExpr(src)
	if err != nil {
		return Reference{}, false, err
	}
	if e.Kind() == celast.CallKind {
		if c := e.AsCall(); c.IsMemberFunction() && c.FunctionName() == "orValue" && len(c.Args()) == 1 && c.Args()[0].Kind() == celast.LiteralKind {
			e = c.Target()
		}
	}
	w := &refWalker{shadow: map[string]int{}}
	r, ok := w.path(e)
	if !ok || !r.Open || len(w.refs) > 0 {
		return Reference{}, false, nil
	}
	return r, true, nil
}

type refWalker struct {
	shadow map[string]int // comprehension variables in scope
	refs   []Reference
}

// path reads a chain of selections and constant indexes rooted at a free
// variable.
func (w *refWalker) path(e celast.Expr) (Reference, bool) {
	switch e.Kind() {
	case celast.IdentKind:
		if id := e.AsIdent(); w.shadow[id] == 0 {
			return Reference{Root: id, Keys: []string{}, Open: true}, true
		}
	case celast.SelectKind:
		s := e.AsSelect()
		if r, ok := w.path(s.Operand()); ok {
			return r.with(s.FieldName()), true
		}
	case celast.CallKind:
		c := e.AsCall()
		args := c.Args()
		if c.IsMemberFunction() || len(args) != 2 {
			break
		}
		switch c.FunctionName() {
		case "_[_]", "_[?_]", "_?._":
			r, ok := w.path(args[0])
			if !ok {
				break
			}
			if args[1].Kind() == celast.LiteralKind {
				switch k := args[1].AsLiteral().(type) {
				case types.String:
					return r.with(string(k)), true
				case types.Int, types.Uint:
					return r.with(AnyItem), true
				}
			}
			w.walk(args[1])
			r.Open = false
			return r, true
		}
	}
	return Reference{}, false
}

func (w *refWalker) walk(e celast.Expr) {
	if e == nil {
		return
	}
	if r, ok := w.path(e); ok {
		w.refs = append(w.refs, r)
		return
	}
	switch e.Kind() {
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
