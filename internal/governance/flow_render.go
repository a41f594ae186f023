package governance

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/gateway"
)

// Format is how a map is written.
type Format string

// Formats of a map.
const (
	FormatJSON    Format = "json"
	FormatMermaid Format = "mermaid"
	FormatDot     Format = "dot"
)

// ParseFormat reads a format's name; "" is JSON.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case "":
		return FormatJSON, nil
	case FormatJSON, FormatMermaid, FormatDot:
		return f, nil
	}
	return "", fmt.Errorf("governance: unknown format %q: want mermaid, dot or json", clip(s, 32))
}

// ContentType is the media type of a map written in f.
func (f Format) ContentType() string {
	switch f {
	case FormatMermaid:
		return "text/vnd.mermaid; charset=utf-8"
	case FormatDot:
		return "text/vnd.graphviz; charset=utf-8"
	}
	return "application/json"
}

// Render writes m in format f. Names in the map come from workflow and
// resource authors, so every label is escaped: no name can end a label,
// add a node or an edge, or run a script in a viewer.
func Render(m *Map, f Format) ([]byte, error) {
	switch f {
	case FormatJSON, "":
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("governance: render json: %w", err)
		}
		return append(b, '\n'), nil
	case FormatMermaid:
		return []byte(mermaid(diagram(m))), nil
	case FormatDot:
		return []byte(dot(m, diagram(m))), nil
	}
	return nil, fmt.Errorf("governance: unknown format %q: want mermaid, dot or json", clip(string(f), 32))
}

// maxLabelRunes bounds one line of a label.
const maxLabelRunes = 120

type shape int

const (
	shapeInput shape = iota
	shapeStep
	shapeConnector
	shapeHost
	shapeUnresolved
)

type node struct {
	id    string
	shape shape
	lines []string
}

type edge struct {
	from, to string
	lines    []string
	dashed   bool
}

type graph struct {
	nodes []node
	edges []edge
	byKey map[string]string
}

// add returns the id of the node for key, adding it when new.
func (g *graph) add(key string, s shape, lines ...string) string {
	if id, ok := g.byKey[key]; ok {
		return id
	}
	id := "n" + strconv.Itoa(len(g.nodes))
	g.byKey[key] = id
	g.nodes = append(g.nodes, node{id: id, shape: s, lines: lines})
	return id
}

// diagram lays a map out as nodes and edges: input fields, steps, and the
// connectors and hosts steps send to.
func diagram(m *Map) *graph {
	g := &graph{byKey: map[string]string{}}
	for _, in := range m.Inputs {
		if in.Class != "" || in.Trust != "" {
			g.add("input:"+in.Path, shapeInput, inputLines(in.Path, in.Class, in.Trust)...)
		}
	}
	for _, s := range m.Steps {
		lines := []string{s.ID, s.Uses}
		if s.Repeats != "" {
			lines[1] = s.Uses + " of " + s.Repeats
		}
		if s.Name != "" {
			lines = append(lines, s.Name)
		}
		g.add("step:"+s.ID, shapeStep, lines...)
	}
	for _, s := range m.Steps {
		to := g.byKey["step:"+s.ID]
		for _, r := range s.Reads {
			if r.From != rootInput && !strings.HasPrefix(r.From, rootInput+".") && !strings.HasPrefix(r.From, rootInput+"[") {
				continue
			}
			from, ok := g.byKey["input:"+r.From]
			if !ok {
				from = g.add("input:"+r.From, shapeInput, inputLines(r.From, strings.Join(r.Classes, ", "), "")...)
			}
			g.edges = append(g.edges, edge{from: from, to: to, lines: nonEmpty(strings.Join(r.Classes, ", "))})
		}
	}
	for _, s := range m.Steps {
		from := g.byKey["step:"+s.ID]
		for _, next := range s.Next {
			if to, ok := g.byKey["step:"+next]; ok {
				g.edges = append(g.edges, edge{from: from, to: to})
			}
		}
		if s.AI != nil {
			aiEdges(g, from, s)
		}
		if h := s.HTTP; h != nil {
			host := "http " + h.Host
			if h.Host == "" {
				host = "http host computed at run time"
			}
			to := g.add("host:"+h.Host, shapeHost, host, "outside the gateway")
			lines := []string{h.Method}
			for _, c := range h.Sends {
				lines = append(lines, c.Class+": sent as is")
			}
			g.edges = append(g.edges, edge{from: from, to: to, lines: lines})
		}
	}
	return g
}

func aiEdges(g *graph, from string, s Step) {
	if s.AI.Unresolved != "" {
		to := g.add("unresolved:"+s.ID, shapeUnresolved, "no route", s.AI.Unresolved)
		g.edges = append(g.edges, edge{from: from, to: to, dashed: true})
	}
	for _, t := range s.AI.Targets {
		place := t.Vendor.Location
		if t.Vendor.Region != "" {
			place += ", " + t.Vendor.Region
		}
		lines := []string{t.Connector + " (" + t.Type + ")", "vendor " + t.Vendor.Name, place}
		if !t.Leaves {
			lines = append(lines, "runs in Moat: nothing leaves")
		}
		to := g.add("connector:"+t.Connector, shapeConnector, lines...)
		var label []string
		if t.Fallback > 0 {
			label = append(label, "fallback "+strconv.Itoa(t.Fallback))
		}
		for _, c := range t.Classes {
			label = append(label, classLabel(c))
		}
		g.edges = append(g.edges, edge{from: from, to: to, lines: label, dashed: t.Fallback > 0})
	}
}

func classLabel(c ClassFlow) string {
	s := c.Class + ": " + string(c.Action)
	switch {
	case c.Action == gateway.Block && c.Coverage == CoverageDetected:
		s += " where detected (call refused)"
	case c.Action == gateway.Block:
		s += " (call refused)"
	case c.Coverage == CoverageDetected && c.Action != gateway.Allow:
		// Only what the detectors recognise gets the action.
		s += " where detected"
	}
	return s
}

func inputLines(path, class, trust string) []string {
	lines := []string{path}
	switch {
	case class != "" && trust != "":
		lines = append(lines, class+", "+trust)
	case class != "":
		lines = append(lines, class)
	case trust != "":
		lines = append(lines, trust)
	}
	return lines
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// mermaid writes a flowchart. Labels are quoted, and every character but
// letters, digits and a few harmless marks is written as an entity code
// (#34; for "), so a label cannot close its quotes or its shape.
func mermaid(g *graph) string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	open := map[shape][2]string{
		shapeInput:      {`(["`, `"])`},
		shapeStep:       {`["`, `"]`},
		shapeConnector:  {`[("`, `")]`},
		shapeHost:       {`[["`, `"]]`},
		shapeUnresolved: {`>"`, `"]`},
	}
	for _, n := range g.nodes {
		o := open[n.shape]
		fmt.Fprintf(&b, "  %s%s%s%s\n", n.id, o[0], mermaidLabel(n.lines), o[1])
	}
	for _, e := range g.edges {
		arrow := "-->"
		if e.dashed {
			arrow = "-.->"
		}
		if len(e.lines) == 0 {
			fmt.Fprintf(&b, "  %s %s %s\n", e.from, arrow, e.to)
			continue
		}
		fmt.Fprintf(&b, "  %s %s|\"%s\"| %s\n", e.from, arrow, mermaidLabel(e.lines), e.to)
	}
	return b.String()
}

func mermaidLabel(lines []string) string {
	parts := make([]string, len(lines))
	for i, l := range lines {
		parts[i] = mermaidEscape(l)
	}
	return strings.Join(parts, "<br/>")
}

func mermaidEscape(s string) string {
	var b strings.Builder
	for _, r := range clip(printable(s), maxLabelRunes) {
		switch {
		case r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(" .,:/@_+-()", r)):
			b.WriteRune(r)
		default:
			b.WriteString("#" + strconv.Itoa(int(r)) + ";")
		}
	}
	return b.String()
}

// dot writes a Graphviz digraph. Labels are quoted strings with quotes
// and backslashes escaped, so a name cannot end them or use an escape.
func dot(m *Map, g *graph) string {
	var b strings.Builder
	b.WriteString("digraph flow {\n")
	title := []string{m.Project + "/" + m.Workflow}
	if m.Version > 0 {
		title[0] += " version " + strconv.Itoa(m.Version)
	}
	if m.Environment != "" {
		title = append(title, "environment "+m.Environment)
	}
	fmt.Fprintf(&b, "  graph [rankdir=LR, labelloc=t, label=\"%s\"];\n", dotLabel(title))
	b.WriteString("  node [shape=box];\n")
	shapes := map[shape]string{
		shapeInput: "ellipse", shapeStep: "box", shapeConnector: "cylinder", shapeHost: "hexagon", shapeUnresolved: "octagon",
	}
	for _, n := range g.nodes {
		fmt.Fprintf(&b, "  %s [label=\"%s\", shape=%s];\n", n.id, dotLabel(n.lines), shapes[n.shape])
	}
	for _, e := range g.edges {
		var attrs []string
		if len(e.lines) > 0 {
			attrs = append(attrs, `label="`+dotLabel(e.lines)+`"`)
		}
		if e.dashed {
			attrs = append(attrs, "style=dashed")
		}
		if len(attrs) == 0 {
			fmt.Fprintf(&b, "  %s -> %s;\n", e.from, e.to)
			continue
		}
		fmt.Fprintf(&b, "  %s -> %s [%s];\n", e.from, e.to, strings.Join(attrs, ", "))
	}
	b.WriteString("}\n")
	return b.String()
}

func dotLabel(lines []string) string {
	parts := make([]string, len(lines))
	for i, l := range lines {
		l = clip(printable(l), maxLabelRunes)
		parts[i] = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(l)
	}
	return strings.Join(parts, `\n`)
}

// printable replaces control and format characters (line breaks, escape
// sequences, bidirectional overrides) and invalid UTF-8 with spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// clip bounds s to n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// WriteVendorsText writes a report as tables: what can reach each vendor,
// what http.request steps send to each host, and the AI steps without a
// route.
func WriteVendorsText(w io.Writer, r *VendorReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	scope := "every project"
	if r.Project != "" {
		scope = "project " + r.Project
	}
	fmt.Fprintf(tw, "%s, environment %s, %d workflow(s)\n\n", cell(scope), cell(r.Environment), len(r.Workflows))
	fmt.Fprintln(tw, "VENDOR\tLOCATION\tREGION\tCLASS\tACTION\tCOVERAGE\tSTEP\tCONNECTOR")
	for _, v := range r.Vendors {
		location := v.Location
		if !v.Leaves {
			location += " (nothing leaves)"
		}
		if len(v.Classes) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t\t\t\t%s\n", cell(v.Name), cell(location), cell(v.Region), cell(strings.Join(v.Connectors, ",")))
		}
		for _, c := range v.Classes {
			for _, s := range c.Sources {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(v.Name), cell(location), cell(v.Region),
					cell(c.Class), cell(string(s.Action)), cell(s.Coverage), cell(stepName(s)), cell(s.Connector))
			}
		}
	}
	if len(r.Hosts) > 0 {
		fmt.Fprintln(tw, "\nHOST (http.request, outside the gateway)\tCLASS\tSTEP")
		for _, h := range r.Hosts {
			host := h.Host
			if host == "" {
				host = "(computed at run time)"
			}
			if len(h.Classes) == 0 {
				for _, s := range h.Steps {
					fmt.Fprintf(tw, "%s\t-\t%s\n", cell(host), cell(stepName(s)))
				}
			}
			for _, c := range h.Classes {
				for _, s := range c.Sources {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", cell(host), cell(c.Class), cell(stepName(s)))
				}
			}
		}
	}
	if len(r.Unresolved) > 0 {
		fmt.Fprintln(tw, "\nAI STEP WITHOUT A ROUTE\tWHY")
		for _, s := range r.Unresolved {
			fmt.Fprintf(tw, "%s\t%s\n", cell(stepName(s)), cell(s.Reason))
		}
	}
	return tw.Flush()
}

func stepName(s Source) string {
	name := s.Project + "/" + s.Workflow
	if s.Version > 0 {
		name += "@" + strconv.Itoa(s.Version)
	}
	return name + " " + s.Step
}

// cell makes a name safe in a terminal table: no control characters (a
// tab would shift the columns, an escape sequence would reach the
// terminal).
func cell(s string) string {
	return clip(printable(s), maxLabelRunes)
}
