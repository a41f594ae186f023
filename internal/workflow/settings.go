package workflow

import (
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// settings checks each step's if, with and nested steps.
func (cc *compiler) settings() {
	for i, s := range cc.def.Steps {
		ptr := index("/steps", i)
		ctx := &exprCtx{step: s.ID, allowed: cc.g.ancestors(i)}
		switch {
		case strings.Contains(s.If, "{{"):
			cc.c.add(ptr+"/if", "if is an expression itself; write it without {{ }}")
		case strings.TrimSpace(s.If) != "":
			cc.expr(s.If, ptr+"/if", nil, true, ctx)
		}
		nt := cc.types[i]
		if nt == nil {
			// The node type is unknown; still check the templates.
			cc.templates(s.With, ptr+"/with", "", nil, nil, ctx)
			continue
		}
		cc.plan.Steps[i].verbatim = cc.checkSettings(nt, s.With, ptr+"/with", nil, ctx, 0)
	}
}

// checkSettings validates with against the node type and compiles its
// expressions; it returns the pointers (within with) left verbatim.
func (cc *compiler) checkSettings(nt NodeType, with map[string]any, withPtr string, scope []string, ctx *exprCtx, depth int) map[string]bool {
	if doc := nt.Schema(); doc != nil {
		sch, err := CompileSchema(doc)
		if err != nil {
			cc.c.add(withPtr, "node type %q has an invalid settings schema: %v", nt.Name(), err)
		} else {
			var inst any = with
			if with == nil {
				inst = map[string]any{}
			}
			for _, fp := range validateValue(sch, inst) {
				cc.c.add(withPtr+fp.ptr, "%s: %s", dotted("with", fp.name()), fp.msg)
			}
		}
	}
	if sc, ok := nt.(SettingsChecker); ok {
		var fps []FieldProblem
		cc.guard(withPtr, nt, func() { fps = sc.Check(with) })
		for _, fp := range fps {
			cc.c.add(withPtr+fp.Pointer, "%s: %s", dotted("with", fp.Pointer), fp.Message)
		}
	}
	// A stored version was checked when it was saved: a check added since
	// must not make it unloadable (the node still refuses at run time).
	if _, stored := cc.nodes.(storedNodeTypes); !stored {
		cc.checkInput(nt, with, withPtr)
	}
	verbatim := map[string]bool{}
	if ef, ok := nt.(ExpressionFielder); ok {
		var fields []ExprField
		cc.guard(withPtr, nt, func() { fields = ef.Expressions(with) })
		for _, f := range fields {
			verbatim[f.Pointer] = true
			if strings.TrimSpace(f.Source) == "" {
				cc.c.add(withPtr+f.Pointer, "the expression is empty")
				continue
			}
			cc.expr(f.Source, withPtr+f.Pointer, union(scope, f.Vars), f.Bool, ctx)
		}
	}
	if ct, ok := nt.(Container); ok {
		var nested Nested
		var has bool
		cc.guard(withPtr, nt, func() { nested, has = ct.Nested(with) })
		if has {
			stepRel, withRel := nestedPointers(with, nested)
			verbatim[nested.Pointer] = true
			if stepRel != "" {
				verbatim[stepRel] = true
			}
			var nnt NodeType
			found := false
			if nested.Uses != "" && cc.nodes != nil {
				nnt, found = cc.nodes.Lookup(nested.Uses)
			}
			switch {
			case nested.Uses == "":
				cc.c.add(withPtr+stepRel+"/uses", "the nested step needs uses: the node type it runs")
			case !found:
				var names []string
				if cc.nodes != nil {
					names = append(names, cc.nodes.Names()...)
					sort.Strings(names)
				}
				cc.c.add(withPtr+stepRel+"/uses", "%s", unknownType(nested.Uses, names))
			case depth >= maxNestedSteps:
				cc.c.add(withPtr+stepRel, "nested steps go more than %d levels deep", maxNestedSteps)
			default:
				cc.checkSettings(nnt, nested.With, withPtr+withRel, union(scope, nested.Vars), ctx, depth+1)
			}
		}
	}
	cc.templates(with, withPtr, "", verbatim, scope, ctx)
	return verbatim
}

// nestedPointers returns where, within with, the nested step and its own
// settings are. Nested.Pointer may name either (/step or /step/with): the
// one holding nested.With is its settings, and the step is around them.
func nestedPointers(with map[string]any, n Nested) (stepRel, withRel string) {
	parent := func(p string) string {
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			return p[:i]
		}
		return ""
	}
	at, _ := valueAt(with, n.Pointer)
	switch {
	case n.With != nil && sameMap(at, n.With):
		return parent(n.Pointer), n.Pointer
	case n.With != nil:
		if inner, ok := valueAt(with, n.Pointer+"/with"); ok && sameMap(inner, n.With) {
			return n.Pointer, n.Pointer + "/with"
		}
	}
	if m, ok := at.(map[string]any); ok {
		if _, hasUses := m["uses"]; hasUses {
			return n.Pointer, n.Pointer + "/with"
		}
	}
	if strings.HasSuffix(n.Pointer, "/with") {
		return parent(n.Pointer), n.Pointer
	}
	return n.Pointer, n.Pointer + "/with"
}

func sameMap(v any, m map[string]any) bool {
	vm, ok := v.(map[string]any)
	return ok && reflect.ValueOf(vm).UnsafePointer() == reflect.ValueOf(m).UnsafePointer()
}

// valueAt resolves a JSON pointer within v.
func valueAt(v any, ptr string) (any, bool) {
	for _, tok := range splitPointer(ptr) {
		switch x := v.(type) {
		case map[string]any:
			e, ok := x[tok]
			if !ok {
				return nil, false
			}
			v = e
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, v := range b {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// templates compiles the {{ }} expressions in every string of v, skipping
// the verbatim pointers (relative to base).
func (cc *compiler) templates(v any, base, rel string, verbatim map[string]bool, scope []string, ctx *exprCtx) {
	if rel != "" && verbatim[rel] {
		return
	}
	switch x := v.(type) {
	case string:
		segs, err := parseTemplate(x)
		if err != nil {
			cc.c.add(base+rel, "%v", err)
			return
		}
		for _, sg := range segs {
			if sg.isExpr {
				cc.expr(sg.text, base+rel, scope, false, ctx)
			}
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			cc.templates(x[k], base, child(rel, k), verbatim, scope, ctx)
		}
	case []any:
		for i, e := range x {
			cc.templates(e, base, index(rel, i), verbatim, scope, ctx)
		}
	}
}

// checkInput runs a node type's checks against the workflow's input schema.
func (cc *compiler) checkInput(nt NodeType, with map[string]any, withPtr string) {
	ic, ok := nt.(InputChecker)
	if !ok {
		return
	}
	var fps []FieldProblem
	cc.guard(withPtr, nt, func() { fps = ic.CheckInput(with, cc.def.Input) })
	for _, fp := range fps {
		cc.c.add(withPtr+fp.Pointer, "%s: %s", dotted("with", fp.Pointer), fp.Message)
	}
}
