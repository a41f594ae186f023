package gateway

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"

	"github.com/moatproject/moat/internal/detect"
)

// Where a vendor processes data (VendorProfile.Location).
const (
	OnPremises     = "on-premises"     // on machines the customer runs
	PrivateCloud   = "private-cloud"   // a tenant of the customer's own in a cloud
	ManagedService = "managed-service" // the vendor's shared service
)

// Trust of the span a finding lies in (Decide's trust argument).
const (
	Trusted   = "trusted"
	Untrusted = "untrusted"
)

// Limits on what CompilePolicy accepts (every input bounded).
const (
	MaxPolicyRules   = 1000
	MaxRuleBytes     = 4096
	MaxRuleNameBytes = 128
	// MaxPolicyStringBytes bounds every string a rule sees (class, vendor
	// and destination fields); a longer one blocks the finding. The bound
	// lets CompilePolicy prove most rules' cost statically.
	MaxPolicyStringBytes = 256
	// DefaultPolicyCostLimit is the CEL cost one rule may spend on one
	// finding unless PolicyOptions says otherwise; the rules policies are
	// made of cost a few units to a few dozen.
	DefaultPolicyCostLimit = 10_000
)

// VendorProfile is what a policy knows of who processes the data. The cel
// tags are the field names rules use: vendor.trainsOnCustomerData.
type VendorProfile struct {
	Name string `json:"name" cel:"name"`
	// Location is OnPremises, PrivateCloud or ManagedService; anything else
	// should be treated by rules as the least trusted, a managed service.
	Location string `json:"location" cel:"location"`
	Region   string `json:"region" cel:"region"`
	// TrainsOnCustomerData: the vendor may train models on what it is sent.
	TrainsOnCustomerData bool `json:"trainsOnCustomerData" cel:"trainsOnCustomerData"`
	// RetentionDays is how long the vendor keeps what it is sent: 0 for
	// not at all, a negative number when unknown (read it as forever).
	RetentionDays int `json:"retentionDays" cel:"retentionDays"`
}

// Destination is where a call goes: a connector, its vendor and the model.
type Destination struct {
	Connector string        `json:"connector"`
	Vendor    VendorProfile `json:"vendor"`
	Model     string        `json:"model"`
}

// Rule is one policy rule: when the CEL expression When holds for a
// finding, the finding gets Action. When sees
//
//	class        string  the finding's data class (pii.email, confidential, …)
//	finding      object  type (string), score (double), start, end (int)
//	vendor       object  name, location, region, trainsOnCustomerData, retentionDays
//	destination  object  connector, model (string)
//	trust        string  "trusted" or "untrusted"
//
// and must produce a bool.
type Rule struct {
	Name   string `json:"name"`
	When   string `json:"when"`
	Action Action `json:"action"`
}

// PolicyOptions tune CompilePolicy.
type PolicyOptions struct {
	// Default is the action when no rule matches. Empty means the secure
	// default: Tokenize for pii.* classes, Allow for anything else.
	Default Action
	// CostLimit bounds the CEL cost of one rule on one finding; 0 means
	// DefaultPolicyCostLimit. A rule over it blocks the finding.
	CostLimit uint64
	// OnError, when set, hears of every rule that failed to evaluate (the
	// finding is blocked). The error names the rule and the cause, never a
	// value: rules do not see the finding's text.
	OnError func(rule string, err error)
}

// RuleProblem is what is wrong with one rule.
type RuleProblem struct {
	Index   int    `json:"index"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// PolicyError lists every problem CompilePolicy found, so all bad rules
// can be fixed at once.
type PolicyError struct {
	Problems []RuleProblem
}

func (e *PolicyError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Rule == "" {
			parts[i] = fmt.Sprintf("rule %d: %s", p.Index+1, p.Message)
		} else {
			parts[i] = fmt.Sprintf("rule %d (%q): %s", p.Index+1, p.Rule, p.Message)
		}
	}
	return "gateway: invalid policy: " + strings.Join(parts, "; ")
}

// Policy decides what happens to each finding before a call leaves. It is
// safe for concurrent use.
type Policy struct {
	rules   []compiledRule
	def     Action // "" for the secure default
	onError func(string, error)

	// readsFinding: some rule names the finding variable. Otherwise a
	// decision depends on the class, the trust and the destination alone,
	// and is worked out once per policy, not once per finding of every
	// call (see decisionCache).
	readsFinding bool
	cache        decisionCache
}

// decisionCache keeps, for a policy whose rules do not read the finding,
// the bound destinations and the decisions made for them by class. It
// holds class names and destinations only, never a finding's text or
// place; rules cannot read either. Decisions that failed are not kept, so
// every failure is evaluated, and reported to OnError, again. Both maps
// are bounded: past the bound, destinations are bound and findings
// evaluated per call, as without the cache.
type decisionCache struct {
	bound     sync.Map // bindingKey -> *boundDestination
	nBound    atomic.Int64
	decisions sync.Map // decisionKey -> Decision
	nDecided  atomic.Int64
}

// Bounds of decisionCache: far more destinations and classes than a
// deployment has.
const (
	maxCachedDestinations = 1024
	maxCachedDecisions    = 8192
)

type bindingKey struct {
	dest  Destination
	trust string
}

type decisionKey struct {
	bd    *boundDestination
	class string
}

type compiledRule struct {
	name   string
	action Action
	prg    cel.Program
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Action Action
	// Rule is the name of the rule that decided, or "secret" (the hard rule
	// for secrets), "injection" (left to the injection stage) or "default".
	Rule string
	// Err is set when a rule failed to evaluate; Action is then Block.
	Err error
}

// Reserved rule names, used in decisions for what no rule decided.
const (
	RuleDefault   = "default"
	RuleSecret    = "secret"
	RuleInjection = "injection"
)

// CEL-side shapes of the finding and destination. The finding's text is
// deliberately absent: rules decide by class, score, span and destination,
// so no rule (nor its error) can leak a value.
type policyFinding struct {
	Type  string  `cel:"type"`
	Score float64 `cel:"score"`
	Start int     `cel:"start"`
	End   int     `cel:"end"`
}

type policyDestination struct {
	Connector string `cel:"connector"`
	Model     string `cel:"model"`
}

func celTypeName(t reflect.Type) string {
	pkg := t.PkgPath()
	return pkg[strings.LastIndexByte(pkg, '/')+1:] + "." + t.Name()
}

var policyEnv = sync.OnceValues(func() (*cel.Env, error) {
	vendorT := reflect.TypeFor[VendorProfile]()
	findingT := reflect.TypeFor[policyFinding]()
	destT := reflect.TypeFor[policyDestination]()
	return cel.NewEnv(
		ext.NativeTypes(ext.ParseStructTags(true), vendorT, findingT, destT),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxRuleBytes),
		cel.Variable("class", cel.StringType),
		cel.Variable("trust", cel.StringType),
		cel.Variable("finding", cel.ObjectType(celTypeName(findingT))),
		cel.Variable("vendor", cel.ObjectType(celTypeName(vendorT))),
		cel.Variable("destination", cel.ObjectType(celTypeName(destT))),
	)
})

// policyPrograms caches compiled rules by cost limit and source, so
// recompiling a policy (on every apply, or per connector) is cheap.
var policyPrograms struct {
	sync.Mutex
	m map[string]cel.Program
}

const maxCachedPolicyPrograms = 4096

// compileRule type-checks and plans one rule's expression.
func compileRule(env *cel.Env, src string, costLimit uint64) (cel.Program, error) {
	key := fmt.Sprintf("%d\x00%s", costLimit, src)
	policyPrograms.Lock()
	prg, ok := policyPrograms.m[key]
	policyPrograms.Unlock()
	if ok {
		return prg, nil
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		msgs := make([]string, 0, len(iss.Errors()))
		for _, e := range iss.Errors() {
			msg := e.Message
			if e.Location != nil && e.Location.Line() > 0 {
				msg += fmt.Sprintf(" (line %d, column %d)", e.Location.Line(), e.Location.Column()+1)
			}
			msgs = append(msgs, msg)
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("produces %s, not bool", ast.OutputType())
	}
	// A rule whose worst case, with every string at its bound, stays under
	// the limit cannot exceed it, so it runs without a cost tracker (half
	// the time of a simple rule); any other rule is tracked and stopped.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if est, err := env.EstimateCost(ast, policySizes{}); err != nil || est.Max > costLimit {
		opts = append(opts, cel.CostLimit(costLimit))
	}
	prg, err := env.Program(ast, opts...)
	if err != nil {
		return nil, err
	}
	policyPrograms.Lock()
	if policyPrograms.m == nil {
		policyPrograms.m = map[string]cel.Program{}
	}
	if len(policyPrograms.m) < maxCachedPolicyPrograms {
		policyPrograms.m[key] = prg
	}
	policyPrograms.Unlock()
	return prg, nil
}

// policySizes tells the cost estimator the bound on the strings rules see.
type policySizes struct{}

func (policySizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if len(n.Path()) > 0 && n.Type().IsExactType(cel.StringType) {
		return &checker.SizeEstimate{Min: 0, Max: MaxPolicyStringBytes}
	}
	return nil
}

func (policySizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// CompilePolicy type-checks every rule and returns the policy, or a
// *PolicyError listing every bad rule: an empty, duplicate or reserved
// name, an unknown action, an expression that does not parse, does not
// type-check or does not produce a bool. Rules are tried in order; the
// first that matches decides.
func CompilePolicy(rules []Rule, opts PolicyOptions) (*Policy, error) {
	env, err := policyEnv()
	if err != nil {
		return nil, fmt.Errorf("gateway: policy environment: %w", err)
	}
	if opts.CostLimit == 0 {
		opts.CostLimit = DefaultPolicyCostLimit
	}
	var problems []RuleProblem
	if opts.Default != "" {
		if _, err := ParseAction(string(opts.Default)); err != nil {
			problems = append(problems, RuleProblem{Index: -1, Rule: RuleDefault, Message: err.Error()})
		}
	}
	if len(rules) > MaxPolicyRules {
		return nil, &PolicyError{Problems: append(problems, RuleProblem{Index: MaxPolicyRules,
			Message: fmt.Sprintf("the policy has %d rules; the limit is %d", len(rules), MaxPolicyRules)})}
	}
	p := &Policy{def: opts.Default, onError: opts.OnError, rules: make([]compiledRule, 0, len(rules))}
	seen := make(map[string]bool, len(rules))
	for i, r := range rules {
		bad := func(format string, args ...any) {
			problems = append(problems, RuleProblem{Index: i, Rule: r.Name, Message: fmt.Sprintf(format, args...)})
		}
		switch {
		case strings.TrimSpace(r.Name) == "":
			bad("a rule needs a name")
		case len(r.Name) > MaxRuleNameBytes:
			bad("the name is %d bytes; the limit is %d", len(r.Name), MaxRuleNameBytes)
		case r.Name == RuleDefault || r.Name == RuleSecret || r.Name == RuleInjection:
			bad("the name %q is reserved", r.Name)
		case seen[r.Name]:
			bad("another rule has this name")
		}
		seen[r.Name] = true
		if _, err := ParseAction(string(r.Action)); err != nil {
			bad("unknown action %q (want allow, redact, mask, hash, tokenize or block)", r.Action)
		}
		if strings.TrimSpace(r.When) == "" {
			bad("a rule needs a when expression")
			continue
		}
		if len(r.When) > MaxRuleBytes {
			bad("the expression is %d bytes; the limit is %d", len(r.When), MaxRuleBytes)
			continue
		}
		prg, err := compileRule(env, r.When, opts.CostLimit)
		if err != nil {
			bad("when %q: %s", truncateRule(r.When, 80), err)
			continue
		}
		p.rules = append(p.rules, compiledRule{name: r.Name, action: r.Action, prg: prg})
		// A CEL variable is read only by naming it: a rule whose text does
		// not hold the name cannot read the finding.
		p.readsFinding = p.readsFinding || strings.Contains(r.When, "finding")
	}
	if len(problems) > 0 {
		return nil, &PolicyError{Problems: problems}
	}
	return p, nil
}

func truncateRule(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// policyActivation hands rules their variables without building a map per
// finding: the destination's values are made once per Decider.
type policyActivation struct {
	class, trust, finding, vendor, destination ref.Val
}

func (a *policyActivation) ResolveName(name string) (any, bool) {
	switch name {
	case "class":
		return a.class, true
	case "finding":
		return a.finding, true
	case "vendor":
		return a.vendor, true
	case "destination":
		return a.destination, true
	case "trust":
		return a.trust, true
	}
	return nil, false
}

func (a *policyActivation) Parent() interpreter.Activation { return nil }

// boundDestination is a destination and trust turned into CEL values once.
type boundDestination struct {
	adapter     types.Adapter
	vendor      ref.Val
	destination ref.Val
	trust       ref.Val
	// cached: this is the policy's decisionCache's binding, whose
	// decisions it keeps.
	cached bool
}

// bind is bindDestination through the policy's cache, when its decisions
// can be cached at all.
func (p *Policy) bind(dest Destination, trust string) (*boundDestination, error) {
	if p.readsFinding {
		return bindDestination(dest, trust)
	}
	if trust != Trusted {
		trust = Untrusted // as bindDestination reads it
	}
	key := bindingKey{dest: dest, trust: trust}
	if bd, ok := p.cache.bound.Load(key); ok {
		return bd.(*boundDestination), nil
	}
	bd, err := bindDestination(dest, trust)
	if err != nil || p.cache.nBound.Load() >= maxCachedDestinations {
		return bd, err
	}
	bd.cached = true
	got, loaded := p.cache.bound.LoadOrStore(key, bd)
	if !loaded {
		p.cache.nBound.Add(1)
	}
	return got.(*boundDestination), nil
}

func bindDestination(dest Destination, trust string) (*boundDestination, error) {
	env, err := policyEnv()
	if err != nil {
		return nil, err
	}
	if trust != Trusted {
		trust = Untrusted // anything unknown is untrusted
	}
	for _, f := range []struct{ name, value string }{
		{"connector", dest.Connector}, {"model", dest.Model}, {"vendor name", dest.Vendor.Name},
		{"vendor location", dest.Vendor.Location}, {"vendor region", dest.Vendor.Region},
	} {
		if len(f.value) > MaxPolicyStringBytes {
			return nil, fmt.Errorf("the destination's %s is %d bytes; the limit is %d", f.name, len(f.value), MaxPolicyStringBytes)
		}
	}
	a := env.CELTypeAdapter()
	vendor := dest.Vendor
	return &boundDestination{
		adapter:     a,
		vendor:      a.NativeToValue(&vendor),
		destination: a.NativeToValue(&policyDestination{Connector: dest.Connector, Model: dest.Model}),
		trust:       types.String(trust),
	}, nil
}

// IsSecretClass reports whether class is a secret, which no policy may let
// leave.
func IsSecretClass(class string) bool {
	return class == "secret" || strings.HasPrefix(class, "secret.")
}

// Evaluate decides what happens to f on its way to dest, from a span of the
// given trust ("trusted" or "untrusted"; anything else counts as
// untrusted). Hard rules come first and no policy overrides them: secrets
// (secret, secret.*) are blocked; injection findings are left to the
// injection stage (Allow here: this stage does not rewrite them). Then the
// rules in order, then the default. A rule that fails to evaluate (its cost
// limit exceeded, a runtime error) blocks the finding: fail closed.
func (p *Policy) Evaluate(f detect.Finding, dest Destination, trust string) Decision {
	bd, err := bindDestination(dest, trust)
	if err != nil {
		return Decision{Action: Block, Rule: RuleDefault, Err: fmt.Errorf("gateway: policy: %w", err)}
	}
	return p.evaluate(f, bd)
}

func hardDecision(class string) (Decision, bool) {
	switch {
	case IsSecretClass(class):
		return Decision{Action: Block, Rule: RuleSecret}, true
	case class == "injection":
		return Decision{Action: Allow, Rule: RuleInjection}, true
	}
	return Decision{}, false
}

func (p *Policy) evaluate(f detect.Finding, bd *boundDestination) Decision {
	if d, ok := hardDecision(f.Type); ok {
		return d
	}
	if len(f.Type) > MaxPolicyStringBytes {
		err := fmt.Errorf("gateway: policy: a class of %d bytes; the limit is %d", len(f.Type), MaxPolicyStringBytes)
		if p.onError != nil {
			p.onError(RuleDefault, err)
		}
		return Decision{Action: Block, Rule: RuleDefault, Err: err}
	}
	if !bd.cached {
		return p.evaluateRules(f, bd)
	}
	key := decisionKey{bd: bd, class: f.Type}
	if d, ok := p.cache.decisions.Load(key); ok {
		return d.(Decision)
	}
	d := p.evaluateRules(f, bd)
	if d.Err == nil && p.cache.nDecided.Load() < maxCachedDecisions {
		if _, loaded := p.cache.decisions.LoadOrStore(key, d); !loaded {
			p.cache.nDecided.Add(1)
		}
	}
	return d
}

// evaluateRules runs the rules, then the default, for f.
func (p *Policy) evaluateRules(f detect.Finding, bd *boundDestination) Decision {
	act := policyActivation{
		class:       types.String(f.Type),
		trust:       bd.trust,
		vendor:      bd.vendor,
		destination: bd.destination,
		finding: bd.adapter.NativeToValue(&policyFinding{
			Type: f.Type, Score: f.Score, Start: f.Start, End: f.End,
		}),
	}
	for i := range p.rules {
		r := &p.rules[i]
		out, _, err := r.prg.Eval(&act)
		if err == nil {
			if b, ok := out.(types.Bool); ok {
				if b {
					return Decision{Action: r.action, Rule: r.name}
				}
				continue
			}
			err = fmt.Errorf("produced %s, not a bool", out.Type().TypeName())
		}
		err = fmt.Errorf("gateway: policy rule %q on %s: %w", r.name, f.Type, err)
		if p.onError != nil {
			p.onError(r.name, err)
		}
		return Decision{Action: Block, Rule: r.name, Err: err}
	}
	return Decision{Action: p.defaultFor(f.Type), Rule: RuleDefault}
}

func (p *Policy) defaultFor(class string) Action {
	if p.def != "" {
		return p.def
	}
	if strings.HasPrefix(class, "pii.") {
		return Tokenize
	}
	return Allow
}

// Decide is Evaluate without the error (reported through
// PolicyOptions.OnError): the action and the name of the rule that chose it.
func (p *Policy) Decide(f detect.Finding, dest Destination, trust string) (Action, string) {
	d := p.Evaluate(f, dest, trust)
	return d.Action, d.Rule
}

// Decider returns the decide function Transformer.Apply takes, for calls to
// dest from spans of the given trust. The destination is bound once, so each
// finding costs only the rules it runs.
func (p *Policy) Decider(dest Destination, trust string) func(detect.Finding) Action {
	bd, err := bindDestination(dest, trust)
	if err != nil {
		err = fmt.Errorf("gateway: policy: %w", err)
		return func(f detect.Finding) Action {
			if d, ok := hardDecision(f.Type); ok {
				return d.Action
			}
			if p.onError != nil {
				p.onError(RuleDefault, err)
			}
			return Block
		}
	}
	return func(f detect.Finding) Action { return p.evaluate(f, bd).Action }
}
