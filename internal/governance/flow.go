// Package governance answers what a security admin asks of the whole
// installation. So far, where each class of data flows: the data-flow map
// of a workflow version (Build) and, across workflows, which classes can
// reach each vendor (Vendors). Both are pure: they read a compiled
// workflow and the gateway's catalog and policy, and ask that policy, so a
// map shows what the gateway does rather than a copy of its rules.
package governance

import (
	"errors"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/moatproject/moat/internal/detect"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/workflow"
)

// Coverage says how far the gateway's action for a class reaches the
// class's values.
const (
	// CoverageItem: the class is declared on a whole data item, so the
	// action applies to the whole value.
	CoverageItem = "item"
	// CoverageDetected: the values are inside other text (an instruction,
	// a computed item, another step's output), so the action applies only
	// to what the gateway's detectors recognise there; the rest is sent as
	// it is.
	CoverageDetected = "detected"
	// CoverageNone: the step does not pass the gateway (http.request), so
	// the values leave as they are.
	CoverageNone = "none"
)

// Map is the data-flow map of one workflow version in the environment of
// the catalog it was drawn against.
type Map struct {
	Project     string       `json:"project"`
	Workflow    string       `json:"workflow"`
	Version     int          `json:"version,omitempty"`
	Hash        string       `json:"hash"`
	Environment string       `json:"environment"`
	Inputs      []InputField `json:"inputs"`
	Steps       []Step       `json:"steps"`
}

// InputField is a field of the run input and what its schema declares of
// it (the nearest x-data-class at or above it; untrusted when any level
// says so).
type InputField struct {
	Path  string `json:"path"`
	Class string `json:"class,omitempty"`
	Trust string `json:"trust,omitempty"`
}

// Step is one step: what it reads, what its output may carry, and where
// what it sends goes.
type Step struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Uses string `json:"uses"`
	// Repeats is the node type a foreach repeats.
	Repeats string `json:"repeats,omitempty"`
	// Next are the steps that may follow it.
	Next  []string `json:"next,omitempty"`
	Reads []Read   `json:"reads,omitempty"`
	// Carries are the classes its output may hold: those of everything its
	// settings read.
	Carries []string  `json:"carries,omitempty"`
	AI      *AICall   `json:"ai,omitempty"`
	HTTP    *HTTPCall `json:"http,omitempty"`
}

// Read is a value a step refers to: an input path (input.email, or input
// for all of it), another step's output (steps.fetch), or a foreach item.
type Read struct {
	From string `json:"from"`
	// Settings are where the step refers to it, as JSON pointers within the
	// step (/with/prompt, /if).
	Settings []string `json:"settings"`
	Classes  []string `json:"classes,omitempty"`
}

// Sent is a class a step sends, before any policy: with the trust of the
// text it is in and the values it comes from.
type Sent struct {
	Class    string   `json:"class"`
	Coverage string   `json:"coverage"`
	Trust    string   `json:"trust,omitempty"`
	From     []string `json:"from"`
}

// AICall is where an ai.* step's calls go.
type AICall struct {
	Alias     string `json:"alias,omitempty"`
	Connector string `json:"connector,omitempty"`
	Model     string `json:"model,omitempty"`
	// Unresolved says why no route is known: such calls fail at run time.
	Unresolved string   `json:"unresolved,omitempty"`
	Sends      []Sent   `json:"sends,omitempty"`
	Targets    []Target `json:"targets,omitempty"`
}

// Target is one connector a call may reach, in the order the gateway tries
// them (fallback 0 first).
type Target struct {
	Fallback  int    `json:"fallback"`
	Connector string `json:"connector"`
	Type      string `json:"type"`
	Model     string `json:"model,omitempty"`
	Vendor    Vendor `json:"vendor"`
	// Leaves is false for connectors that run in Moat (local) or answer
	// from a recording (replay): nothing leaves the server.
	Leaves  bool        `json:"leaves"`
	Classes []ClassFlow `json:"classes,omitempty"`
}

// Vendor is who processes what a connector sends.
type Vendor struct {
	Name                 string `json:"name"`
	Location             string `json:"location"`
	Region               string `json:"region,omitempty"`
	TrainsOnCustomerData bool   `json:"trainsOnCustomerData"`
	// RetentionDays is -1 when unknown.
	RetentionDays int `json:"retentionDays"`
}

// ClassFlow is what the gateway does to one class sent to one target.
type ClassFlow struct {
	Class    string `json:"class"`
	Coverage string `json:"coverage"`
	Trust    string `json:"trust,omitempty"`
	// Action is what happens to the class on this route: one transform
	// serves every target a fallback may reach, so it is the strictest of
	// the targets' decisions. Block refuses the call.
	Action gateway.Action `json:"action"`
	Rule   string         `json:"rule"`
	// VendorAction is what the policy decides for this target alone.
	VendorAction gateway.Action `json:"vendorAction"`
	VendorRule   string         `json:"vendorRule"`
	From         []string       `json:"from"`
}

// Reaches reports whether the class's values (or what they are turned
// into) reach the target: everything but a block does.
func (c ClassFlow) Reaches() bool { return c.Action != gateway.Block }

// HTTPCall is where an http.request step sends. It does not pass the
// gateway: what it refers to leaves as it is.
type HTTPCall struct {
	Method string `json:"method"`
	// Host is "" when the URL's host is computed at run time.
	Host  string `json:"host,omitempty"`
	Sends []Sent `json:"sends,omitempty"`
}

// Options are what a map is drawn against.
type Options struct {
	// Catalog and Policy are those of the server's gateway
	// (Gateway.Catalog, Gateway.Policy). Without a catalog, AI steps show
	// no route.
	Catalog *gateway.Catalog
	Policy  *gateway.Policy
	// Nodes finds which settings of a foreach's nested step are raw
	// expressions; without it, every plain string there that parses as an
	// expression is read as one.
	Nodes workflow.NodeTypes
	// Version is the version number the map names.
	Version int
}

// Build draws the data-flow map of a compiled workflow.
func Build(plan *workflow.Plan, opts Options) (*Map, error) {
	if plan == nil || plan.Definition == nil {
		return nil, errors.New("governance: build: no workflow")
	}
	if opts.Catalog != nil && opts.Policy == nil {
		// A map must not guess what the gateway decides.
		return nil, errors.New("governance: build: a catalog needs the policy its gateway runs")
	}
	def := plan.Definition
	b := &builder{plan: plan, opts: opts, schema: newInputSchema(def.Input), index: map[string]int{}}
	m := &Map{
		Project:  def.Project,
		Workflow: def.Name,
		Version:  opts.Version,
		Hash:     plan.Hash,
		Inputs:   b.schema.fields(),
		Steps:    []Step{},
	}
	if opts.Catalog != nil {
		m.Environment = opts.Catalog.Environment()
	}
	for i, ps := range plan.Steps {
		b.index[ps.ID] = i
		b.steps = append(b.steps, b.scan(ps))
	}
	b.propagate()
	for i, ps := range plan.Steps {
		m.Steps = append(m.Steps, b.step(i, ps))
	}
	return m, nil
}

// Settings of AI nodes that steer the call but are not sent.
var aiOptions = []string{"model", "restore", "injection", "maxTokens", "temperature"}

// builder holds what Build learns of each step.
type builder struct {
	plan   *workflow.Plan
	opts   Options
	schema *inputSchema
	index  map[string]int // step id -> index
	steps  []*scanned
	// carries are the classes each step's output may hold.
	carries []map[string]bool
}

// text is one string of a step that is read as expressions: a {{ }}
// template or a raw CEL setting.
type text struct {
	pointer string // within the step: /with/prompt, /if
	exprs   []string
	whole   bool // a template that is exactly one {{ }}
	refs    []reference
}

// scanned is one step's texts, split by what they are for.
type scanned struct {
	cond []text // the step's if: read, never sent
	own  []text // its settings (a foreach's without the step it repeats)
	// repeated are the settings of the step a foreach repeats; nil for
	// any other step.
	repeated []text
	// uses and with are those of the node that acts (the step itself, or
	// the step a foreach repeats), base the pointer of its settings, and
	// acting the texts of those settings.
	uses   string
	with   map[string]any
	base   string
	acting []text
}

func (b *builder) scan(ps *workflow.PlanStep) *scanned {
	s := &scanned{uses: ps.Uses, with: ps.With, base: "/with"}
	if ps.If != "" {
		s.cond = []text{newRawText("/if", ps.If)}
	}
	skip := ""
	if c, ok := ps.Type.(workflow.Container); ok {
		if n, ok := c.Nested(ps.With); ok {
			skip = "/step"
			s.uses, s.with, s.base = n.Uses, n.With, "/with/step/with"
			var nt workflow.NodeType
			if b.opts.Nodes != nil {
				nt, _ = b.opts.Nodes.Lookup(n.Uses)
			}
			s.repeated = append([]text{}, settingTexts(nt, n.With, s.base, "")...)
		}
	}
	s.own = settingTexts(ps.Type, ps.With, "/with", skip)
	s.acting = s.own
	if s.repeated != nil {
		s.acting = s.repeated
	}
	return s
}

// settingTexts finds the expressions in a node's settings: the raw CEL
// fields its type names, and {{ }} templates in every other string. For a
// node of unknown type every plain string that parses is read as an
// expression: reading too much only makes a map say more may flow.
func settingTexts(nt workflow.NodeType, with map[string]any, base, skip string) []text {
	raw := map[string]bool{}
	known := false
	if nt != nil {
		known = true
		if ef, ok := nt.(workflow.ExpressionFielder); ok {
			for _, f := range ef.Expressions(with) {
				raw[f.Pointer] = true
			}
		}
	}
	var out []text
	var walk func(v any, ptr string, depth int)
	walk = func(v any, ptr string, depth int) {
		if depth > workflow.MaxDepth || (skip != "" && ptr == skip) {
			return
		}
		switch x := v.(type) {
		case string:
			switch {
			case raw[ptr]:
				out = append(out, newRawText(base+ptr, x))
			case strings.Contains(x, "{{"):
				out = append(out, newTemplateText(base+ptr, x))
			case !known:
				if refs, err := expressionRefs(x); err == nil && len(refs) > 0 {
					out = append(out, text{pointer: base + ptr, exprs: []string{x}, refs: refs})
				}
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				walk(x[k], ptr+"/"+escapePointer(k), depth+1)
			}
		case []any:
			for i, e := range x {
				walk(e, ptr+"/"+strconv.Itoa(i), depth+1)
			}
		}
	}
	walk(any(with), "", 0)
	return out
}

// readsEverything is what an expression that cannot be read is taken to
// read: the whole input and every step's output.
var readsEverything = []reference{{root: rootInput}, {root: rootSteps}}

func newRawText(ptr, src string) text {
	t := text{pointer: ptr, exprs: []string{src}}
	refs, err := expressionRefs(src)
	if err != nil {
		refs = readsEverything
	}
	t.refs = refs
	return t
}

func newTemplateText(ptr, tmpl string) text {
	exprs, whole, err := workflow.TemplateExpressions(tmpl)
	t := text{pointer: ptr, exprs: exprs, whole: whole}
	if err != nil {
		t.refs = readsEverything
		return t
	}
	for _, src := range exprs {
		refs, err := expressionRefs(src)
		if err != nil {
			refs = readsEverything
		}
		t.refs = append(t.refs, refs...)
	}
	return t
}

// propagate finds what every step's output may carry: the classes of all
// its settings read, through other steps' outputs until nothing changes.
func (b *builder) propagate() {
	b.carries = make([]map[string]bool, len(b.steps))
	for i := range b.carries {
		b.carries[i] = map[string]bool{}
	}
	for range len(b.steps) + 1 {
		changed := false
		for i, s := range b.steps {
			items := b.itemClasses(i)
			for _, t := range append(slices.Clip(s.own), s.repeated...) {
				for _, r := range t.refs {
					for _, c := range b.classesOf(r, i, items) {
						if !b.carries[i][c] {
							b.carries[i][c] = true
							changed = true
						}
					}
				}
			}
		}
		if !changed {
			return
		}
	}
}

// itemClasses are the classes a foreach's items may hold: those of its
// own settings.
func (b *builder) itemClasses(i int) []string {
	s := b.steps[i]
	if s.repeated == nil {
		return nil
	}
	set := map[string]bool{}
	for _, t := range s.own {
		for _, r := range t.refs {
			if r.root != rootItem {
				for _, c := range b.classesOf(r, i, nil) {
					set[c] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// classesOf are the classes the value a reference reads may hold.
func (b *builder) classesOf(r reference, self int, items []string) []string {
	switch r.root {
	case rootInput:
		return b.schema.classesWithin(r.keys)
	case rootItem:
		return items
	case rootSteps:
		if b.carries == nil {
			return nil
		}
		set := map[string]bool{}
		if len(r.keys) > 0 {
			if i, ok := b.index[r.keys[0]]; ok {
				maps.Copy(set, b.carries[i])
			}
		} else {
			for i := range b.carries {
				if i != self {
					maps.Copy(set, b.carries[i])
				}
			}
		}
		return slices.Sorted(maps.Keys(set))
	}
	return nil
}

// name is how a map shows what a reference reads.
func (r reference) name() string {
	switch r.root {
	case rootSteps:
		if len(r.keys) > 0 {
			return pathName(rootSteps, r.keys[:1])
		}
		return rootSteps
	case rootItem:
		return rootItem
	}
	return pathName(r.root, r.keys)
}

func (b *builder) step(i int, ps *workflow.PlanStep) Step {
	s := b.steps[i]
	out := Step{ID: ps.ID, Name: ps.Name, Uses: ps.Uses, Carries: slices.Sorted(maps.Keys(b.carries[i]))}
	if s.repeated != nil {
		out.Repeats = s.uses
	}
	for _, e := range ps.Succs {
		if !slices.Contains(out.Next, e.To) {
			out.Next = append(out.Next, e.To)
		}
	}
	items := b.itemClasses(i)
	out.Reads = b.reads(i, items, s.cond, s.own, s.repeated)
	switch {
	case strings.HasPrefix(s.uses, "ai."):
		out.AI = b.aiCall(i, ps, s, items)
	case s.uses == "http.request":
		out.HTTP = b.httpCall(i, s, items)
	}
	return out
}

func (b *builder) reads(i int, items []string, groups ...[]text) []Read {
	byName := map[string]*Read{}
	var order []string
	for _, g := range groups {
		for _, t := range g {
			for _, r := range t.refs {
				n := r.name()
				rd, ok := byName[n]
				if !ok {
					rd = &Read{From: n, Classes: b.classesOf(r, i, items)}
					byName[n] = rd
					order = append(order, n)
				}
				if !slices.Contains(rd.Settings, t.pointer) {
					rd.Settings = append(rd.Settings, t.pointer)
				}
			}
		}
	}
	out := make([]Read, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	return out
}

// sends collects classes by class, coverage and trust.
type sends map[[3]string]map[string]bool

func (s sends) add(class, coverage, trust, from string) {
	k := [3]string{class, coverage, trust}
	if s[k] == nil {
		s[k] = map[string]bool{}
	}
	if from != "" {
		s[k][from] = true
	}
}

func (s sends) list() []Sent {
	keys := slices.SortedFunc(maps.Keys(s), func(a, b [3]string) int {
		for i := range a {
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	out := make([]Sent, 0, len(keys))
	for _, k := range keys {
		out = append(out, Sent{Class: k[0], Coverage: k[1], Trust: k[2], From: slices.Sorted(maps.Keys(s[k]))})
	}
	return out
}

// AI settings are sent as the gateway's units: instructions (messages),
// data items, examples; unitOf says which one a setting is.
type unitKind int

const (
	unitNone unitKind = iota // steers the call, not sent
	unitMessage
	unitData
	unitExample
	unitOther
)

// unitOf places a pointer within an AI node's settings; for a data item it
// also returns the item's name and whether the pointer is its whole value.
func unitOf(uses, rel string) (kind unitKind, item string, whole bool) {
	toks := strings.Split(strings.TrimPrefix(rel, "/"), "/")
	switch first := toks[0]; {
	case slices.Contains(aiOptions, first):
		return unitNone, "", false
	case first == "system" || first == "prompt" || first == "messages":
		return unitMessage, "", false
	case first == "data" && len(toks) >= 2:
		name := unescapePointer(toks[1])
		switch {
		case len(toks) == 2:
			return unitData, name, true
		case toks[2] == "value":
			return unitData, name, len(toks) == 3
		}
		return unitNone, "", false // its class and trust: names, not data
	case first == "text" && uses == "ai.classify":
		return unitData, "text", len(toks) == 1
	case first == "examples":
		return unitExample, "", false
	}
	return unitOther, "", false
}

// dataItem is what the step says of one data item.
type dataItem struct{ class, trust string }

func dataItems(with map[string]any) map[string]dataItem {
	out := map[string]dataItem{}
	items, _ := with["data"].(map[string]any)
	for name, v := range items {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		class, _ := m["class"].(string)
		trust, _ := m["trust"].(string)
		out[name] = dataItem{class: class, trust: trust}
	}
	return out
}

func (b *builder) aiCall(i int, ps *workflow.PlanStep, s *scanned, items []string) *AICall {
	call := &AICall{Connector: ps.Connector}
	model, _ := s.with["model"].(string)
	if ps.Connector != "" {
		call.Model = model
	} else {
		call.Alias = model
	}
	sent := sends{}
	declaredItems := dataItems(s.with)
	// A data item with a class of its own declares it over its whole
	// value, whatever the value is.
	for name, d := range declaredItems {
		if d.class != "" {
			trust := d.trust
			if trust == "" {
				trust = gateway.Untrusted
			}
			sent.add(d.class, CoverageItem, trust, "data."+name)
		}
	}
	for _, t := range s.acting {
		kind, name, whole := unitOf(s.uses, strings.TrimPrefix(t.pointer, s.base))
		var itemClass, trust string
		switch kind {
		case unitNone:
			continue
		case unitMessage:
			trust = b.messageTrust(t.refs)
		case unitExample:
			trust = gateway.Trusted
		case unitOther:
			trust = gateway.Untrusted
		case unitData:
			d := declaredItems[name]
			itemClass, trust = d.class, d.trust
			from := ""
			if whole && t.whole && len(t.exprs) == 1 {
				if p, ok := exactInputPath(t.exprs[0]); ok {
					class, declared := b.schema.declaredAt(p)
					if itemClass == "" {
						itemClass = class
						from = pathName(rootInput, p)
					}
					if trust == "" {
						trust = declared
					}
				}
			}
			if trust == "" {
				trust = gateway.Untrusted // data is data
			}
			if itemClass != "" && from != "" {
				sent.add(itemClass, CoverageItem, trust, from)
			}
		}
		for _, r := range t.refs {
			for _, c := range b.classesOf(r, i, items) {
				if c != itemClass {
					sent.add(c, CoverageDetected, trust, r.name())
				}
			}
		}
	}
	call.Sends = sent.list()
	b.route(call, ps, model)
	return call
}

// messageTrust is the trust the nodes give an instruction: trusted only
// when everything it refers to is input declared trusted.
func (b *builder) messageTrust(refs []reference) string {
	for _, r := range refs {
		if r.root != rootInput {
			return gateway.Untrusted
		}
		if _, trust := b.schema.declaredAt(r.keys); trust != gateway.Trusted {
			return gateway.Untrusted
		}
	}
	return gateway.Trusted
}

// route resolves the step's calls as the gateway does, and asks the
// policy what happens to each class sent on the way to each target.
func (b *builder) route(call *AICall, ps *workflow.PlanStep, model string) {
	cat := b.opts.Catalog
	switch {
	case strings.Contains(model, "{{"):
		call.Unresolved = "the model is computed at run time; any model may be called"
		return
	case cat == nil:
		call.Unresolved = "this server has no AI gateway"
		return
	case model == "" && ps.Connector == "":
		call.Unresolved = "the step names neither a connector nor a model"
		return
	}
	var route gateway.Route
	var err error
	if ps.Connector != "" {
		route, err = cat.Resolve("", ps.Connector, model)
	} else {
		route, err = cat.Resolve(model, "", "")
	}
	if err != nil {
		var ge *gateway.Error
		if errors.As(err, &ge) {
			call.Unresolved = ge.Message
		} else {
			call.Unresolved = err.Error()
		}
		return
	}
	for n, t := range route.Targets {
		typ := ""
		if conn, ok := cat.Connector(t.ConnectorName); ok {
			typ = conn.Kind()
		}
		p := t.Vendor.Profile()
		target := Target{
			Fallback:  n,
			Connector: t.ConnectorName,
			Type:      typ,
			Model:     t.Model,
			Vendor:    Vendor{Name: p.Name, Location: p.Location, Region: p.Region, TrainsOnCustomerData: p.TrainsOnCustomerData, RetentionDays: p.RetentionDays},
			Leaves:    typ != gateway.TypeLocal && typ != gateway.TypeReplay,
		}
		dest := gateway.Destination{Connector: t.ConnectorName, Vendor: p, Model: t.Model}
		for _, s := range call.Sends {
			f := detect.Finding{Type: s.Class, Score: 1}
			eff, _ := b.opts.Policy.DecideRoute(f, route, s.Trust)
			own := b.opts.Policy.Evaluate(f, dest, s.Trust)
			target.Classes = append(target.Classes, ClassFlow{
				Class: s.Class, Coverage: s.Coverage, Trust: s.Trust,
				Action: eff.Action, Rule: eff.Rule,
				VendorAction: own.Action, VendorRule: own.Rule,
				From: s.From,
			})
		}
		call.Targets = append(call.Targets, target)
	}
}

func (b *builder) httpCall(i int, s *scanned, items []string) *HTTPCall {
	call := &HTTPCall{Method: "GET"}
	if m, ok := s.with["method"].(string); ok && m != "" {
		call.Method = m
	}
	if raw, ok := s.with["url"].(string); ok {
		call.Host = literalHost(raw)
	}
	sent := sends{}
	for _, t := range s.acting {
		for _, r := range t.refs {
			for _, c := range b.classesOf(r, i, items) {
				sent.add(c, CoverageNone, "", r.name())
			}
		}
	}
	call.Sends = sent.list()
	return call
}

// literalHost is the host of a URL template when it is written out before
// any {{ }}; "" when it is computed.
func literalHost(raw string) string {
	prefix, _, templated := strings.Cut(raw, "{{")
	scheme, rest, ok := strings.Cut(prefix, "://")
	if !ok || scheme == "" {
		return ""
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		if templated {
			return "" // the host goes on inside the template
		}
		end = len(rest)
	}
	u, err := url.Parse(scheme + "://" + rest[:end])
	if err != nil {
		return ""
	}
	// url.Parse decodes the percent escapes it allows in a host (a
	// non-ASCII byte's, an IPv6 zone's "%25"): such a host is not the one
	// written, and the map does not vouch for what decoding made of it.
	if h := u.Hostname(); strings.Contains(rest[:end], h) {
		return h
	}
	return ""
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func unescapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}
