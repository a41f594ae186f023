package workflow

import (
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Plan is a compiled definition: checked, with its DAG resolved and its
// expressions compiled. It is safe for concurrent use.
type Plan struct {
	Definition *Definition
	// Canonical is the definition as JSON (encoding/json, map keys sorted):
	// what is stored and hashed.
	Canonical []byte
	// Hash is the hex SHA-256 of Canonical.
	Hash string
	// Steps are in definition order.
	Steps []*PlanStep

	byID        map[string]*PlanStep
	progs       programs
	inputSchema *jsonschema.Schema
}

// PlanStep is a step with its node type and its edges.
type PlanStep struct {
	*Step
	Index int
	Type  NodeType
	Preds []Edge
	Succs []Edge

	// verbatim are pointers within With that RenderWith leaves as written:
	// raw CEL fields and a nested step.
	verbatim map[string]bool
}

// Step returns the step with the given id, or nil.
func (p *Plan) Step(id string) *PlanStep {
	return p.byID[id]
}

// Roots returns the ids of the steps without predecessors, in definition
// order: where a run starts.
func (p *Plan) Roots() []string {
	var out []string
	for _, s := range p.Steps {
		if len(s.Preds) == 0 {
			out = append(out, s.ID)
		}
	}
	return out
}

// Load parses and compiles a definition, reporting every problem of both.
func Load(filename string, src []byte, nodes NodeTypes) (*Plan, error) {
	def, pos, perr := Parse(filename, src)
	if def == nil {
		return nil, perr
	}
	plan, cerr := Compile(def, filename, pos, nodes)
	if perr == nil {
		return plan, cerr
	}
	parsed := perr.(Problems)
	all := append(Problems(nil), parsed...)
	if cerr != nil {
		ps, ok := cerr.(Problems)
		if !ok {
			return nil, cerr
		}
		// A field Parse could not read (a list where a string belongs) is
		// empty for Compile; what Compile says of it is noise.
	next:
		for _, p := range ps {
			for _, q := range parsed {
				if q.Pointer != "" && (p.Pointer == q.Pointer || strings.HasPrefix(p.Pointer, q.Pointer+"/")) {
					continue next
				}
			}
			all = append(all, p)
		}
	}
	return nil, all.err()
}

// FromCanonical reloads a stored version from its canonical JSON. Problems
// carry pointers but no positions.
func FromCanonical(canonical []byte, nodes NodeTypes) (*Plan, error) {
	tree, err := DecodeJSON(canonical)
	if err != nil {
		return nil, err
	}
	c := &problems{}
	if _, ok := tree.(map[string]any); !ok {
		c.add("", "a workflow must be a JSON object, not %s", describe(tree))
		return nil, c.list.err()
	}
	def := &Definition{}
	decodeTree(tree, def, c)
	if len(c.list) > 0 {
		return nil, c.list.err()
	}
	if nodes != nil {
		nodes = storedNodeTypes{nodes}
	}
	return Compile(def, "", nil, nodes)
}

// storedNodeTypes accepts every connector a stored version names: it was
// checked when it was saved, and a connector removed since must fail the
// step that names it at run time, not make the version unloadable.
type storedNodeTypes struct{ NodeTypes }

func (storedNodeTypes) HasConnector(string) bool { return true }
