package governance

import (
	"github.com/moatproject/moat/internal/workflow"
)

// What an expression refers to decides what a step reads. The nodes
// package asks a narrower question of the same references (which input an
// AI step's instruction carries); a map also follows data through other
// steps' outputs and foreach items. Both read them with workflow's rules:
// a path into a value stops where a key is computed, and everything below
// it counts.

// Roots an expression may read data from.
const (
	rootInput = "input"
	rootSteps = "steps"
	rootItem  = "item"
)

// reference is one value an expression reads: a root and the constant keys
// below it. A closed reference had a key computed at run time, so it reads
// everything below its keys.
type reference struct {
	root string
	keys []string
	open bool
}

// expressionRefs parses one expression and returns what it reads from the
// roots that carry data; run, env and the like carry none.
func expressionRefs(src string) ([]reference, error) {
	all, err := workflow.ExpressionRefs(src)
	if err != nil {
		return nil, err
	}
	var refs []reference
	for _, r := range all {
		switch r.Root {
		case rootInput, rootSteps, rootItem:
			refs = append(refs, reference{root: r.Root, keys: r.Keys, open: r.Open})
		}
	}
	return refs, nil
}

// exactInputPath returns the input path an expression is exactly
// (input.a.b, input["a"], input.?a.orValue(…)): the nodes give such a data
// item the class the input schema declares there.
func exactInputPath(src string) ([]string, bool) {
	r, ok, err := workflow.ExactReference(src)
	if err != nil || !ok || r.Root != rootInput {
		return nil, false
	}
	return r.Keys, true
}
