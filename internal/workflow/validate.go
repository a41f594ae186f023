package workflow

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // schedules name IANA zones; the binary must know them everywhere

	"github.com/robfig/cron/v3"
)

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	identRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	webhookRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,127}$`)
)

// celReserved are words CEL does not accept as a field name after a dot.
var celReserved = map[string]bool{
	"true": true, "false": true, "null": true, "in": true,
	"as": true, "break": true, "const": true, "continue": true, "else": true,
	"for": true, "function": true, "if": true, "import": true, "let": true,
	"loop": true, "package": true, "namespace": true, "return": true,
	"var": true, "void": true, "while": true,
}

const maxNestedSteps = 8

func (cc *compiler) header() {
	d := cc.def
	switch d.APIVersion {
	case APIVersion:
	case "":
		cc.c.add("/apiVersion", "apiVersion is missing; write apiVersion: %s", APIVersion)
	default:
		cc.c.add("/apiVersion", "unsupported apiVersion %q; this Moat reads %s", truncate(d.APIVersion, 40), APIVersion)
	}
	switch d.Kind {
	case Kind:
	case "":
		cc.c.add("/kind", "kind is missing; write kind: %s", Kind)
	default:
		cc.c.add("/kind", "kind must be %s, not %q", Kind, truncate(d.Kind, 40))
	}
	switch {
	case d.Name == "":
		cc.c.add("/name", "name is missing")
	case !nameRE.MatchString(d.Name):
		cc.c.add("/name", "name %q must be 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit", truncate(d.Name, 70))
	}
	if !nameRE.MatchString(d.Project) {
		cc.c.add("/project", "project %q must be 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit", truncate(d.Project, 70))
	}
}

func (cc *compiler) trigger() {
	t := cc.def.Trigger
	var kinds []string
	if t.Manual != nil {
		kinds = append(kinds, "manual")
	}
	if t.Webhook != nil {
		kinds = append(kinds, "webhook")
	}
	if t.Schedule != nil {
		kinds = append(kinds, "schedule")
	}
	if len(kinds) > 1 {
		cc.c.add("/trigger", "a workflow has at most one trigger; found %s", strings.Join(kinds, " and "))
	}
	if w := t.Webhook; w != nil {
		switch {
		case w.Path == "":
			cc.c.add("/trigger/webhook/path", "the webhook needs a path")
		case !webhookRE.MatchString(w.Path) || strings.Contains(w.Path, ".."):
			cc.c.add("/trigger/webhook/path", "webhook path %q must be lowercase letters, digits, '.', '_', '-' and '/' (at most 128, no \"..\"), starting with a letter or digit", truncate(w.Path, 140))
		}
	}
	if s := t.Schedule; s != nil {
		switch {
		case strings.TrimSpace(s.Cron) == "":
			cc.c.add("/trigger/schedule/cron", "the schedule needs a cron expression such as \"*/5 * * * *\" or \"@hourly\"")
		case strings.HasPrefix(s.Cron, "TZ=") || strings.HasPrefix(s.Cron, "CRON_TZ="):
			cc.c.add("/trigger/schedule/cron", "write the time zone in timezone, not in the cron expression")
		default:
			if _, err := cron.ParseStandard(s.Cron); err != nil {
				cc.c.add("/trigger/schedule/cron", "invalid cron expression %q: %v", truncate(s.Cron, 60), err)
			}
		}
		if s.Timezone != "" {
			if _, err := time.LoadLocation(s.Timezone); err != nil || s.Timezone == "Local" {
				cc.c.add("/trigger/schedule/timezone", "unknown time zone %q; use an IANA name such as Europe/Berlin or UTC", truncate(s.Timezone, 60))
			}
		}
	}
}

func (cc *compiler) input() {
	cc.inputSchema()
	if s := cc.def.Trigger.Schedule; s != nil && s.Input != nil {
		for _, p := range cc.plan.ValidateInput(s.Input) {
			cc.c.add("/trigger/schedule/input"+p.Pointer, "schedule %s", p.Message)
		}
	}
}

func (cc *compiler) inputSchema() {
	in := cc.def.Input
	if in == nil || in.Schema == nil {
		return
	}
	const base = "/input/schema"
	checkAnnotations(in.Schema, base, cc.c)
	sch, err := CompileSchema(in.Schema)
	if err != nil {
		for _, fp := range schemaCompileProblems(err) {
			cc.c.add(base+fp.ptr, "%s", fp.msg)
		}
	} else {
		cc.plan.inputSchema = sch
	}
	if ap, ok := in.Schema["additionalProperties"].(bool); ok && !ap && in.Schema["patternProperties"] == nil {
		cc.inputClosed = true
		cc.inputProps = map[string]bool{}
		if props, ok := in.Schema["properties"].(map[string]any); ok {
			for k := range props {
				cc.inputProps[k] = true
			}
		}
	}
}

// steps checks each step on its own. It returns false when there are too
// many (or none) to go on.
func (cc *compiler) steps() bool {
	steps := cc.def.Steps
	if len(steps) == 0 {
		cc.c.add("/steps", "a workflow needs at least one step")
		return false
	}
	if len(steps) > MaxSteps {
		cc.c.add("/steps", "the workflow has %d steps; the limit is %d", len(steps), MaxSteps)
		return false
	}
	var names []string
	if cc.nodes != nil {
		names = append(names, cc.nodes.Names()...)
		sort.Strings(names)
	}
	cc.types = make([]NodeType, len(steps))
	for i := range steps {
		s := &steps[i]
		ptr := index("/steps", i)
		switch {
		case s.ID == "":
			cc.c.add(ptr+"/id", "the step needs an id")
		case celReserved[s.ID]:
			cc.c.add(ptr+"/id", "step id %q is a reserved word of the expression language; choose another", s.ID)
		case !identRE.MatchString(s.ID):
			cc.c.add(ptr+"/id", "step id %q must start with a letter or '_' and hold only letters, digits and '_' (at most 64); '-' is not allowed because steps.a-b would read as a subtraction", truncate(s.ID, 70))
		default:
			if j, dup := cc.byID[s.ID]; dup {
				cc.c.add(ptr+"/id", "duplicate step id %q (already used by step %d)", s.ID, j+1)
			} else {
				cc.byID[s.ID] = i
			}
		}
		switch {
		case s.Uses == "":
			cc.c.add(ptr+"/uses", "the step needs uses: the node type it runs")
		default:
			var nt NodeType
			ok := false
			if cc.nodes != nil {
				nt, ok = cc.nodes.Lookup(s.Uses)
			}
			if !ok {
				cc.c.add(ptr+"/uses", "%s", unknownType(s.Uses, names))
			} else {
				cc.types[i] = nt
			}
		}
		if s.Connector != "" && !nameRE.MatchString(s.Connector) {
			cc.c.add(ptr+"/connector", "connector %q must be a name of lowercase letters, digits and '-'", truncate(s.Connector, 70))
		} else if s.Connector != "" && !hasConnector(cc.nodes, s.Connector) {
			cc.c.add(ptr+"/connector", "unknown connector %q: no connector of that name is configured", s.Connector)
		}
		if r := s.Retry; r != nil {
			if r.MaxAttempts < 1 || r.MaxAttempts > maxRetryAttempts {
				cc.c.add(ptr+"/retry/maxAttempts", "retry.maxAttempts must be between 1 and %d", maxRetryAttempts)
			}
			if r.Backoff < 0 {
				cc.c.add(ptr+"/retry/backoff", "retry.backoff must not be negative")
			}
			if r.MaxBackoff < 0 {
				cc.c.add(ptr+"/retry/maxBackoff", "retry.maxBackoff must not be negative")
			} else if r.MaxBackoff > 0 && r.MaxBackoff < r.Backoff {
				cc.c.add(ptr+"/retry/maxBackoff", "retry.maxBackoff must not be shorter than retry.backoff")
			}
			if r.Multiplier != 0 && (r.Multiplier < 1 || r.Multiplier > 10) {
				cc.c.add(ptr+"/retry/multiplier", "retry.multiplier must be between 1 and 10")
			}
		}
		if s.Timeout < 0 {
			cc.c.add(ptr+"/timeout", "timeout must not be negative")
		} else if s.Timeout > 0 && waits(cc.types[i]) {
			cc.c.add(ptr+"/timeout", "an %s step has no step timeout: set how long it waits in its settings (with)", s.Uses)
		} else if s.Timeout > Duration(MaxStepTimeout) {
			cc.c.add(ptr+"/timeout", "timeout must be at most %s (it is %s)", formatDuration(MaxStepTimeout), formatDuration(time.Duration(s.Timeout)))
		}
	}
	return true
}

// hasConnector asks the node types whether a connector exists; without a
// Connectors implementation there are none, so a step cannot name one and
// have it silently ignored.
func hasConnector(nodes NodeTypes, name string) bool {
	c, ok := nodes.(Connectors)
	return ok && c.HasConnector(name)
}

func waits(nt NodeType) bool {
	w, ok := nt.(Waiter)
	return ok && w.Waits()
}

func unknownType(uses string, names []string) string {
	msg := fmt.Sprintf("unknown node type %q", truncate(uses, 60))
	if s := closest(uses, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	if len(names) == 0 {
		return msg + "; no node types are registered"
	}
	return msg + "; known types: " + strings.Join(names, ", ")
}

// retention checks the retention durations: positive and bounded.
func (cc *compiler) retention() {
	r := cc.def.Retention
	if r == nil {
		return
	}
	for _, f := range []struct {
		name string
		d    Duration
	}{{"input", r.Input}, {"steps", r.Steps}, {"output", r.Output}} {
		switch {
		case f.d < 0:
			cc.c.add("/retention/"+f.name, "retention.%s must be positive; leave it out for the server's default", f.name)
		case time.Duration(f.d) > MaxRetention:
			cc.c.add("/retention/"+f.name, "retention.%s must be at most %s (it is %s)", f.name, formatDuration(MaxRetention), formatDuration(time.Duration(f.d)))
		}
	}
}
