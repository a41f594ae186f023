package workflow

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"sort"
)

// Compile checks a definition and compiles it into a Plan. It reports every
// problem it finds, as Problems, each with the position of its pointer in
// pos (which may be nil). An empty project becomes "default".
func Compile(def *Definition, filename string, pos *Positions, nodes NodeTypes) (*Plan, error) {
	c := &problems{file: filename, pos: pos}
	if def == nil {
		c.add("", "no definition")
		return nil, c.list.err()
	}
	if def.Project == "" {
		def.Project = "default"
	}
	canonical, err := canonicalJSON(def)
	if err != nil {
		c.add("", "the definition cannot be written as JSON: %v", err)
		return nil, c.list.err()
	}
	tree, err := decodeJSON(canonical, false)
	if err != nil {
		c.add("", "the definition cannot be read back from JSON: %v", err)
		return nil, c.list.err()
	}
	// Read it back, so that free-form values (with, output, schemas) hold
	// plain values (int64, []any, …) whichever way def was built: the plan
	// then behaves the same as one reloaded with FromCanonical.
	plain := &Definition{}
	decodeTree(tree, plain, c)
	if len(c.list) > 0 {
		return nil, c.list.err()
	}
	*def = *plain
	sum := sha256.Sum256(canonical)
	cc := &compiler{
		c:     c,
		def:   def,
		nodes: nodes,
		plan:  &Plan{Definition: def, Canonical: canonical, Hash: hex.EncodeToString(sum[:]), byID: map[string]*PlanStep{}},
		byID:  map[string]int{},
		check: map[string]*checkedExpr{},
	}
	cc.header()
	cc.trigger()
	cc.input()
	cc.retention()
	if cc.steps() {
		cc.graph()
		cc.settings()
	}
	cc.templates(def.Output, "/output", "", nil, nil, &exprCtx{anyStep: true})
	cc.literals(tree, "", 0)
	if len(c.list) > 0 {
		return nil, c.list.err()
	}
	return cc.plan, nil
}

// canonicalJSON writes def as compact JSON with sorted map keys and without
// HTML escaping.
func canonicalJSON(def *Definition) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(def); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeTree decodes plain values into a Definition, reporting problems.
func decodeTree(tree any, def *Definition, c *problems) {
	decodeValue(tree, reflect.ValueOf(def).Elem(), "", c)
}

type compiler struct {
	c     *problems
	def   *Definition
	nodes NodeTypes
	plan  *Plan
	byID  map[string]int // step id -> first index
	types []NodeType     // per step; nil when unknown
	g     *graph
	nExpr int
	check map[string]*checkedExpr

	inputClosed bool
	inputProps  map[string]bool
}

// graph builds the DAG and the plan's steps.
func (cc *compiler) graph() {
	steps := cc.def.Steps
	targets := make([][]target, len(steps))
	for i := range steps {
		b, ok := cc.types[i].(Brancher)
		if !ok {
			continue
		}
		withPtr := index("/steps", i) + "/with"
		var ts []string
		if !cc.guard(withPtr, cc.types[i], func() { ts = b.Targets(steps[i].With) }) {
			continue
		}
		for _, t := range ts {
			p, found := findString(steps[i].With, t, "")
			if !found {
				p = ""
			}
			targets[i] = append(targets[i], target{id: t, ptr: withPtr + p})
		}
	}
	cc.g = buildGraph(steps, cc.byID, targets, cc.c)
	cc.g.check(cc.c)
	for i := range steps {
		ps := &PlanStep{Step: &steps[i], Index: i, Type: cc.types[i]}
		cc.plan.Steps = append(cc.plan.Steps, ps)
		if _, dup := cc.plan.byID[ps.ID]; !dup {
			cc.plan.byID[ps.ID] = ps
		}
	}
	keys := append([][2]int(nil), cc.g.order...)
	sort.Slice(keys, func(a, b int) bool {
		if keys[a][0] != keys[b][0] {
			return keys[a][0] < keys[b][0]
		}
		return keys[a][1] < keys[b][1]
	})
	for _, key := range keys { // edges in definition order of both ends
		e := *cc.g.edges[key]
		cc.plan.Steps[key[0]].Succs = append(cc.plan.Steps[key[0]].Succs, e)
		cc.plan.Steps[key[1]].Preds = append(cc.plan.Steps[key[1]].Preds, e)
	}
}

// guard runs a node type's method, turning a panic into a problem.
func (cc *compiler) guard(ptr string, nt NodeType, f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			cc.c.add(ptr, "node type %q could not read these settings: %v", nt.Name(), r)
			ok = false
		}
	}()
	f()
	return true
}

// literals walks the canonical tree: literal credentials and nesting depth.
func (cc *compiler) literals(v any, ptr string, depth int) {
	switch x := v.(type) {
	case string:
		if kind, found := detectCredential(literalText(x)); found {
			cc.c.add(ptr, "%s", credentialMessage(kind))
		}
	case map[string]any:
		if depth >= MaxDepth {
			cc.c.add(ptr, "values are nested more than %d levels deep", MaxDepth)
			return
		}
		for k, e := range x {
			cc.literals(e, child(ptr, k), depth+1)
		}
	case []any:
		if depth >= MaxDepth {
			cc.c.add(ptr, "values are nested more than %d levels deep", MaxDepth)
			return
		}
		for i, e := range x {
			cc.literals(e, index(ptr, i), depth+1)
		}
	}
}
