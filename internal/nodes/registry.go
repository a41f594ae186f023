// Package nodes holds the built-in step kinds. Each file is one node type;
// Builtins registers them all in one table.
package nodes

import (
	"context"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/moatproject/moat/internal/workflow"
)

// Kind says how the engine runs a step.
type Kind int

const (
	// Inline steps are pure: they run one after another inside the job that
	// reached them and commit with the run's state.
	Inline Kind = iota
	// Effect steps act on the outside world: each attempt is a job of its
	// own and carries an idempotency key, so a crash repeats at most it.
	Effect
	// Timer steps wait until a time (a scheduled job).
	Timer
	// Human steps wait for a person's decision on a task.
	Human
)

func (k Kind) String() string {
	switch k {
	case Inline:
		return "inline"
	case Effect:
		return "effect"
	case Timer:
		return "timer"
	case Human:
		return "human"
	}
	return "unknown"
}

// Node is a registered step kind.
type Node interface {
	workflow.NodeType
	Description() string
	// Kind may depend on the settings (a foreach is an effect when the step
	// it repeats is).
	Kind(with map[string]any) Kind
}

// Executor runs Inline and Effect nodes.
type Executor interface {
	Execute(ctx context.Context, c *Call) (Result, error)
}

// Call is one execution of a step.
type Call struct {
	Plan *workflow.Plan
	Step *workflow.PlanStep
	// With is the step's settings with templates rendered; raw CEL fields
	// are left for the node to evaluate with Plan.Eval over Vars.
	With map[string]any
	Vars workflow.Vars
	// IdempotencyKey is stable for one attempt, across crashes and
	// re-executions of that attempt.
	IdempotencyKey string
	Attempt        int
	// RunID is the run the step belongs to: the gateway keeps a run's
	// tokens consistent across its steps.
	RunID string
	Env   *Env
}

// Result is what a step produced.
type Result struct {
	Output any
	// Next, when non-nil, restricts which successors are activated.
	Next []string
}

// Env is what nodes may use from their surroundings.
type Env struct {
	HTTP     *http.Client
	Registry *Registry
	Now      func() time.Time
	// AI is the gateway; without it AI steps fail.
	AI AI
	// Secrets gives the vault secrets http.request steps authenticate
	// with; without it a step naming a credential fails.
	Secrets Secrets
	// Environment is the server's environment: steps use its secrets only.
	Environment string
}

// Registry is the table of node types.
type Registry struct {
	byName map[string]Node
	// hasConnector answers whether a step may name a connector; it is set
	// by the app (the gateway's catalog) and may change on reload.
	hasConnector atomic.Pointer[func(name string) bool]
}

// NewRegistry registers the given nodes.
func NewRegistry(nodes ...Node) *Registry {
	r := &Registry{byName: make(map[string]Node, len(nodes))}
	for _, n := range nodes {
		r.byName[n.Name()] = n
	}
	return r
}

// Builtins is the registry of every built-in node type.
func Builtins() *Registry {
	r := NewRegistry(
		Transform{}, Switch{}, Filter{}, Wait{}, Approval{}, HTTPRequest{}, Respond{},
		AIChat{}, AIExtract{}, AIClassify{},
	)
	r.byName["foreach"] = Foreach{registry: r}
	return r
}

// Lookup implements workflow.NodeTypes.
func (r *Registry) Lookup(name string) (workflow.NodeType, bool) {
	n, ok := r.byName[name]
	return n, ok
}

// Node returns the node type with this name.
func (r *Registry) Node(name string) (Node, bool) {
	n, ok := r.byName[name]
	return n, ok
}

// Names implements workflow.NodeTypes.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// SetConnectors sets how the registry knows the configured connectors a
// step may name (nil: none). It is safe to call while workflows are saved.
func (r *Registry) SetConnectors(has func(name string) bool) {
	if has == nil {
		r.hasConnector.Store(nil)
		return
	}
	r.hasConnector.Store(&has)
}

// HasConnector implements workflow.Connectors.
func (r *Registry) HasConnector(name string) bool {
	has := r.hasConnector.Load()
	return has != nil && (*has)(name)
}
