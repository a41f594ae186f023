package workflow

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/google/cel-go/common/types"
)

// checkedExpr is an expression compiled and checked once per Compile.
type checkedExpr struct {
	prog *program
	errs []string
	refs exprRefs
}

// exprCtx says which steps an expression may refer to.
type exprCtx struct {
	step    string          // the step it belongs to
	allowed map[string]bool // its transitive predecessors
	anyStep bool            // the workflow output may name any step
}

// expr compiles one expression and checks what it refers to.
func (cc *compiler) expr(src, ptr string, scope []string, wantBool bool, ctx *exprCtx) {
	cc.nExpr++
	if cc.nExpr > MaxExpressions {
		if cc.nExpr == MaxExpressions+1 {
			cc.c.add(ptr, "the definition has more than %d expressions", MaxExpressions)
		}
		return
	}
	if len(src) > MaxExprBytes {
		cc.c.add(ptr, "the expression is %d bytes; the limit is %d", len(src), MaxExprBytes)
		return
	}
	extras := extraVars(scope)
	key := src + "\x00" + strings.Join(extras, ",")
	ce, ok := cc.check[key]
	if !ok {
		ce = &checkedExpr{}
		prog, errs, err := compileExpr(src, extras)
		switch {
		case err != nil:
			ce.errs = []string{fmt.Sprintf("invalid expression %q: %v", truncate(src, 80), err)}
		case errs != nil:
			ce.errs = []string{celErrorsMessage(src, errs)}
		default:
			ce.prog = prog
			ce.refs = collectRefs(prog.ast)
		}
		cc.check[key] = ce
	}
	for _, e := range ce.errs {
		cc.c.add(ptr, "%s", e)
	}
	if ce.prog == nil {
		return
	}
	cc.plan.progs.put(src, ce.prog, true)
	if wantBool {
		if t := ce.prog.ast.OutputType(); t != nil {
			switch t.Kind() {
			case types.BoolKind, types.DynKind, types.AnyKind, types.TypeParamKind, types.ErrorKind:
			default:
				cc.c.add(ptr, "expression %q must be a boolean; it is %s", truncate(src, 80), t.String())
			}
		}
	}
	for _, id := range ce.refs.steps {
		_, exists := cc.byID[id]
		switch {
		case !exists:
			msg := fmt.Sprintf("expression refers to steps.%s, but there is no step %q", id, id)
			ids := make([]string, 0, len(cc.byID))
			for k := range cc.byID {
				ids = append(ids, k)
			}
			sort.Strings(ids)
			if s := closest(id, ids); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			cc.c.add(ptr, "%s", msg)
		case ctx.anyStep || ctx.allowed[id]:
		case id == ctx.step:
			cc.c.add(ptr, "step %q cannot refer to its own output (steps.%s)", id, id)
		default:
			cc.c.add(ptr, "expression refers to steps.%s, but step %q does not come before step %q; add %q to its needs", id, id, ctx.step, id)
		}
	}
	if cc.inputClosed {
		for _, f := range ce.refs.input {
			if !cc.inputProps[f] {
				allowed := make([]string, 0, len(cc.inputProps))
				for k := range cc.inputProps {
					allowed = append(allowed, k)
				}
				sort.Strings(allowed)
				cc.c.add(ptr, "expression refers to input.%s, but the input schema has no field %q (fields: %s)", f, f, strings.Join(allowed, ", "))
			}
		}
	}
	for name := range ce.refs.idents {
		if scopedVars[name] && !slices.Contains(scope, name) {
			cc.c.add(ptr, "%s is only defined inside a nested step (such as a foreach's step)", name)
		}
	}
}
