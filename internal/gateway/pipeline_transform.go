package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/detect"
)

// The Classify, Decide and Transform stages.

type unitKind int

const (
	unitMessage unitKind = iota
	unitData
	unitExample
)

// unit is one text of the request that leaves: a message, a data item's
// value or an example's text.
type unit struct {
	kind  unitKind
	index int    // in its list
	name  string // a data item's name
	text  string
	trust string // Trusted or Untrusted
	class string // a data item's declared class, "" when none

	findings  []detect.Finding
	injection *detect.InjectionResult // set for untrusted units
	fenced    bool                    // an untrusted message sent fenced (InjectionFence)
	out       string                  // as it leaves
}

// describe names the unit in messages; it never shows its text.
func (u *unit) describe() string {
	switch u.kind {
	case unitData:
		return fmt.Sprintf("data item %q", u.name)
	case unitExample:
		return "example " + strconv.Itoa(u.index+1)
	}
	return "message " + strconv.Itoa(u.index+1)
}

// classify scans every unit: PII and secrets everywhere (examples too: they
// leave as well), declared classes as findings over the whole item, and
// injection in every untrusted unit.
func (c *call) classify() error {
	req := c.req
	c.units = make([]*unit, 0, len(req.Messages)+len(req.Data)+len(req.Examples))
	for i, m := range req.Messages {
		trust := m.Trust
		if trust == "" {
			trust = Trusted
		}
		c.units = append(c.units, &unit{kind: unitMessage, index: i, text: m.Content, trust: trust})
	}
	for i, d := range req.Data {
		trust := d.Trust
		if trust == "" {
			trust = Untrusted
		}
		c.units = append(c.units, &unit{kind: unitData, index: i, name: d.Name, text: d.Value, trust: trust, class: d.Class})
	}
	for i, e := range req.Examples {
		// Examples are written by whoever wrote the step's instructions, and
		// are decided as trusted text; they are scanned for PII all the same.
		c.units = append(c.units, &unit{kind: unitExample, index: i, text: e.Text, trust: Trusted})
	}
	var worst *detect.InjectionResult
	var injected *unit
	for _, u := range c.units {
		u.findings = detect.Scan(u.text)
		for _, f := range u.findings {
			c.rec.addFinding(f.Type)
		}
		// A data item declared personal is one identifier as a whole, even
		// where a detector saw only part of it ("Jane" of "Jane Doe").
		c.rec.addSubject(u.class, u.text)
		c.rec.addSubjects(u.text, u.findings)
		// A declared class counts once, whether or not a detector also
		// found it (an e-mail field holding an e-mail address).
		if u.class != "" && !hasType(u.findings, u.class) {
			c.rec.addFinding(u.class)
		}
		if u.trust != Untrusted {
			continue
		}
		// A data item is read by the model as data, where a plain task
		// ("write a poem") is itself an injection; an untrusted message is
		// someone's prompt (the OpenAI endpoint's user turns), where it is not.
		var res detect.InjectionResult
		if u.kind == unitData {
			res = detect.InjectionInData(u.text)
		} else {
			res = detect.Injection(u.text)
		}
		u.injection = &res
		if worst == nil || res.Score > worst.Score {
			worst = u.injection
		}
		if res.Injection && injected == nil {
			injected = u
		}
	}
	if worst != nil && worst.Score > 0 {
		rec := *worst
		c.rec.Injection = &rec
	}
	if injected == nil {
		return nil
	}
	c.rec.addFinding("injection")
	if c.req.Injection == InjectionFence {
		for _, u := range c.units {
			if u.kind == unitMessage && u.injection != nil && u.injection.Injection {
				u.fenced = true
			}
		}
		return nil
	}
	res := injected.injection
	return &Error{Stage: "classify", Code: CodeInjection,
		Message: fmt.Sprintf("%s scores as a prompt injection (%.2f): %s", injected.describe(), res.Score, strings.Join(boundedReasons(res.Reasons), ", "))}
}

// boundedReasons keeps a message short: the first eight reasons.
func boundedReasons(rs []string) []string {
	if len(rs) > 8 {
		return append(rs[:8:8], fmt.Sprintf("and %d more", len(rs)-8))
	}
	return rs
}

// strictness orders actions for a finding going to several targets: the
// strictest wins. Block stops the call; redact, mask and hash lose the
// value for good, redact the most; tokenize hides it but stays restorable;
// allow sends it. A chain whose targets disagree gets, per finding, what
// the least trusted of them would get.
func strictness(a Action) int {
	switch a {
	case Allow:
		return 0
	case Tokenize:
		return 1
	case Hash:
		return 2
	case Mask:
		return 3
	case Redact:
		return 4
	}
	return 5 // block, and anything unknown
}

// routeDecider decides findings for every target of a route at once: a
// fallback may send the same transformed request to any of them, so each
// finding gets the strictest of the targets' decisions (one transform, one
// set of tokens, whichever target answers).
type routeDecider struct {
	policy *Policy
	dests  []Destination
	// bound holds the targets' bindings for each trust seen so far (a
	// call sees one or two, so a list serves better than a map).
	bound []trustBinding
}

// trustBinding is every target bound for one trust, or the error that
// stopped binding them.
type trustBinding struct {
	trust string
	bds   []*boundDestination
	err   error
}

func newRouteDecider(p *Policy, route Route) *routeDecider {
	d := &routeDecider{policy: p, dests: make([]Destination, 0, len(route.Targets))}
	for _, t := range route.Targets {
		d.dests = append(d.dests, Destination{Connector: t.ConnectorName, Vendor: t.Vendor.Profile(), Model: t.Model})
	}
	return d
}

// binding returns the targets bound for trust, binding them the first time.
func (d *routeDecider) binding(trust string) *trustBinding {
	for i := range d.bound {
		if d.bound[i].trust == trust {
			return &d.bound[i]
		}
	}
	tb := trustBinding{trust: trust, bds: make([]*boundDestination, 0, len(d.dests))}
	for _, dest := range d.dests {
		bd, err := d.policy.bind(dest, trust)
		if err != nil {
			tb.bds, tb.err = nil, fmt.Errorf("gateway: policy: %w", err)
			break
		}
		tb.bds = append(tb.bds, bd)
	}
	d.bound = append(d.bound, tb)
	return &d.bound[len(d.bound)-1]
}

// decide returns the strictest decision for f over the targets, and the
// vendor it is for.
func (d *routeDecider) decide(f detect.Finding, trust string) (Decision, string) {
	tb := d.binding(trust)
	if tb.err != nil {
		if hd, ok := hardDecision(f.Type); ok {
			return hd, d.dests[0].Vendor.Name
		}
		return Decision{Action: Block, Rule: RuleDefault, Err: tb.err}, d.dests[0].Vendor.Name
	}
	var best Decision
	vendor := ""
	for i, bd := range tb.bds {
		dec := d.policy.evaluate(f, bd)
		if i == 0 || strictness(dec.Action) > strictness(best.Action) {
			best, vendor = dec, d.dests[i].Vendor.Name
		}
	}
	return best, vendor
}

// blocked is the Transform stage's error for a blocked finding: its type,
// place and rule, never its value.
func blocked(f detect.Finding, u *unit, vendor string, dec Decision) *Error {
	return &Error{Stage: "transform", Code: CodeBlocked,
		Message: fmt.Sprintf("%s at %d–%d of %s may not go to vendor %s (rule %s)", f.Type, f.Start, f.End, u.describe(), vendor, dec.Rule),
		Err:     ErrBlocked}
}

// transform decides every finding, rewrites every unit, saves the new
// tokens and builds the request as it will leave.
func (c *call) transform(ctx context.Context) (connectors.Request, error) {
	g, req := c.g, c.req
	c.tokens = NewTokenizer()
	if req.Identity.Run != "" && g.cfg.Tokens != nil {
		entries, err := g.cfg.Tokens.LoadTokens(ctx, req.Identity.Run)
		if err != nil {
			return connectors.Request{}, &Error{Stage: "transform", Code: CodeInternal, Message: "the run's tokens could not be loaded; nothing was sent", Err: err}
		}
		if err := c.tokens.Load(entries); err != nil {
			return connectors.Request{}, &Error{Stage: "transform", Code: CodeInternal, Message: "the run's tokens are inconsistent; nothing was sent", Err: err}
		}
	}
	// Token shapes already in the input are never issued: a forged
	// "<EMAIL_1>" must not come back as somebody's address.
	for _, u := range c.units {
		c.tokens.Reserve(u.text)
	}
	tr := &Transformer{Tokens: c.tokens, HashKey: g.cfg.HashKey}
	dec := newRouteDecider(g.cfg.Policy, c.route)
	for _, u := range c.units {
		if err := c.transformUnit(tr, dec, u); err != nil {
			return connectors.Request{}, err
		}
	}
	if fresh := c.tokens.NewEntries(); len(fresh) > 0 && req.Identity.Run != "" && g.cfg.Tokens != nil {
		// Saved before anything leaves: a token the store does not hold
		// could not be restored on another node, nor kept consistent.
		if err := g.cfg.Tokens.SaveTokens(ctx, req.Identity.Run, fresh); err != nil {
			return connectors.Request{}, &Error{Stage: "transform", Code: CodeInternal, Message: "the run's new tokens could not be saved; nothing was sent", Err: err}
		}
	}
	return c.build(), nil
}

func hasType(findings []detect.Finding, class string) bool {
	for _, f := range findings {
		if f.Type == class {
			return true
		}
	}
	return false
}

// transformUnit rewrites one unit. A declared class covers the whole item:
// when its action is anything but allow, the whole value gets it (whatever
// the detectors found inside is covered); when it is allow, the detected
// findings are transformed one by one. A block of either kind blocks.
func (c *call) transformUnit(tr *Transformer, dec *routeDecider, u *unit) error {
	decisions := make([]Action, len(u.findings))
	for i, f := range u.findings {
		d, vendor := dec.decide(f, u.trust)
		if d.Action == Block {
			return blocked(f, u, vendor, d)
		}
		decisions[i] = d.Action
	}
	findings := u.findings
	if u.class != "" && u.text != "" {
		whole := detect.Finding{Type: u.class, Start: 0, End: utf8.RuneCountInString(u.text), Score: 1, Reasons: []string{"declared"}}
		d, vendor := dec.decide(whole, u.trust)
		if d.Action == Block {
			return blocked(whole, u, vendor, d)
		}
		if d.Action != Allow {
			var covered []Applied
			for _, f := range u.findings {
				if f.Type != u.class { // the whole item stands for those
					covered = append(covered, Applied{Finding: f, Action: d.Action})
				}
			}
			c.rec.addApplied(covered)
			findings, decisions = []detect.Finding{whole}, []Action{d.Action}
		} else {
			c.rec.addApplied([]Applied{{Finding: whole, Action: Allow}})
		}
	}
	next := 0
	out, applied, err := tr.Apply(u.text, findings, func(detect.Finding) Action {
		a := decisions[next]
		next++
		return a
	})
	if err != nil {
		return &Error{Stage: "transform", Code: CodeInternal, Message: "transforming " + u.describe() + " failed; nothing was sent", Err: err}
	}
	c.rec.addApplied(applied)
	u.out = out
	return nil
}

// build assembles the request as it leaves: a system message with the
// fence instruction (when there are data items or fenced messages) and the
// canary; the messages as transformed; the data items fenced, at the end of
// the last message when it is the user's, else in a user message of their
// own; and the examples as transformed.
func (c *call) build() connectors.Request {
	req := c.req
	c.canary = NewCanary()
	var data, msgs, examples []*unit
	texts := make([]string, 0, len(c.units))
	for _, u := range c.units {
		switch u.kind {
		case unitData:
			data = append(data, u)
		case unitMessage:
			msgs = append(msgs, u)
		case unitExample:
			examples = append(examples, u)
		}
		texts = append(texts, u.out)
	}
	fenceNeeded := len(data) > 0
	for _, u := range msgs {
		fenceNeeded = fenceNeeded || u.fenced
	}
	var fc fence
	system := c.canary.Instruction()
	if fenceNeeded {
		fc = newFence(texts)
		system = fenceInstruction + "\n\n" + system
	}
	sent := make([]connectors.Message, 0, len(msgs)+2)
	sent = append(sent, connectors.Message{Role: connectors.System, Content: system})
	for _, u := range msgs {
		content := u.out
		if u.fenced {
			content = fc.block("message_"+strconv.Itoa(u.index+1), Untrusted, content)
		}
		sent = append(sent, connectors.Message{Role: req.Messages[u.index].Role, Content: content})
	}
	if len(data) > 0 {
		var b strings.Builder
		for i, u := range data {
			if i > 0 {
				b.WriteString("\n\n")
			}
			b.WriteString(fc.block(u.name, u.trust, u.out))
		}
		if last := &sent[len(sent)-1]; len(sent) > 1 && last.Role == connectors.User {
			if last.Content != "" {
				last.Content += "\n\n"
			}
			last.Content += b.String()
		} else {
			sent = append(sent, connectors.Message{Role: connectors.User, Content: b.String()})
		}
	}
	out := connectors.Request{
		Messages:    sent,
		Schema:      req.Schema,
		SchemaName:  req.SchemaName,
		Labels:      req.Labels,
		MaxTokens:   req.MaxTokens,
		Temperature: req.Temperature,
	}
	for _, u := range examples {
		out.Examples = append(out.Examples, connectors.Example{Text: u.out, Label: req.Examples[u.index].Label})
	}
	c.sent, c.examples = sent, out.Examples
	return out
}
