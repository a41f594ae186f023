package governance

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"

	"github.com/moatproject/moat/internal/workflow"
)

// What an expression refers to decides what a step reads. The nodes
// package answers a narrower question of the same expressions (which input
// an AI step's instruction carries, to refuse untrusted text there); a map
// also follows data through other steps' outputs and foreach items, so it
// reads the expressions for itself, with the same rules: a path into a
// value stops where a key is computed, and everything below it counts.

// Roots an expression may read data from.
const (
	rootInput = "input"
	rootSteps = "steps"
	rootItem  = "item"
)

// anyItem stands for an element of a list in a path; no field name holds
// a NUL, so it cannot be taken for one.
const anyItem = "\x00[]"

// reference is one value an expression reads: a root and the constant keys
// below it. A closed reference had a key computed at run time, so it reads
// everything below its keys.
type reference struct {
	root string
	keys []string
	open bool
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
		return nil, errors.New("the expression does not parse")
	}
	return a.NativeRep().Expr(), nil
}

// expressionRefs parses one expression and returns what it reads.
func expressionRefs(src string) ([]reference, error) {
	e, err := parseExpr(src)
	if err != nil {
		return nil, err
	}
	w := &refWalker{shadow: map[string]int{}}
	w.walk(e)
	return w.refs, nil
}

// exactInputPath returns the input path an expression is exactly
// (input.a.b, input["a"], input.?a.orValue(…)): the nodes give such a data
// item the class the input schema declares there.
func exactInputPath(src string) ([]string, bool) {
	e, err := parseExpr(src)
	if err != nil {
		return nil, false
	}
	if e.Kind() == celast.CallKind {
		if c := e.AsCall(); c.IsMemberFunction() && c.FunctionName() == "orValue" && len(c.Args()) == 1 && c.Args()[0].Kind() == celast.LiteralKind {
			e = c.Target()
		}
	}
	w := &refWalker{shadow: map[string]int{}}
	r, ok := w.path(e)
	if !ok || r.root != rootInput || !r.open || len(w.refs) > 0 {
		return nil, false
	}
	return r.keys, true
}

type refWalker struct {
	shadow map[string]int
	refs   []reference
}

func (r reference) with(key string) reference {
	if !r.open {
		return r
	}
	return reference{root: r.root, keys: append(slices.Clip(r.keys), key), open: true}
}

// path reads a chain of selections and constant indexes rooted at a free
// root variable.
func (w *refWalker) path(e celast.Expr) (reference, bool) {
	switch e.Kind() {
	case celast.IdentKind:
		switch id := e.AsIdent(); id {
		case rootInput, rootSteps, rootItem:
			if w.shadow[id] == 0 {
				return reference{root: id, keys: []string{}, open: true}, true
			}
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
					return r.with(anyItem), true
				}
			}
			w.walk(args[1])
			r.open = false
			return r, true
		}
	}
	return reference{}, false
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
