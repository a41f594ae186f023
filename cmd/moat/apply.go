package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/moatproject/moat/internal/client"
	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/manifest"
	"github.com/moatproject/moat/internal/workflow"
)

const maxResourceFile = 4 << 20

func newApplyCmd() *cobra.Command {
	var files []string
	var r remote
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update the resources of multi-document YAML files on a server",
		Long: "Sends every document (" + strings.Join(applyOrder, ", ") + ") of the files to the server given by --server or MOAT_SERVER,\n" +
			"authenticated with MOAT_TOKEN. The documents of all files are applied in that order, whatever the order of the files,\n" +
			"so that what a document names exists first. A workflow whose definition is unchanged makes no new version.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("apply needs -f FILE")
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			docs, err := collectDocuments(files)
			if err != nil {
				return err
			}
			failed := false
			for _, d := range docs {
				if err := applyRemote(cmd.Context(), c, d, cmd.OutOrStdout()); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					failed = true
				}
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "resource file or directory (repeatable)")
	r.bind(cmd)
	return cmd
}

// applyOrder is the order documents are applied in: a connector names a
// vendor, a model connectors, a workflow a project and models.
var applyOrder = []string{"Project", gateway.KindVendor, gateway.KindConnector, gateway.KindModel, "Workflow"}

// resourcePlurals are the API's path segments of the gateway's kinds.
var resourcePlurals = map[string]string{gateway.KindVendor: "vendors", gateway.KindConnector: "connectors", gateway.KindModel: "models"}

// fileDocument is a document and the file it is in.
type fileDocument struct {
	Path string
	manifest.Document
}

func (d fileDocument) unknownKind() error {
	return fmt.Errorf("%s:%d: unknown kind %q (want one of %s)", d.Path, d.Line, d.Kind, strings.Join(applyOrder, ", "))
}

// collectDocuments reads every file (directories expanded) before anything
// is applied, and orders the documents by applyOrder, keeping the files'
// order within a kind. Unknown kinds sort last, to be reported there.
func collectDocuments(paths []string) ([]fileDocument, error) {
	var docs []fileDocument
	for _, p := range paths {
		files, err := resourceFiles(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			ds, err := readDocuments(f)
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				docs = append(docs, fileDocument{Path: f, Document: d})
			}
		}
	}
	rank := func(kind string) int {
		if i := slices.Index(applyOrder, kind); i >= 0 {
			return i
		}
		return len(applyOrder)
	}
	slices.SortStableFunc(docs, func(a, b fileDocument) int { return rank(a.Kind) - rank(b.Kind) })
	return docs, nil
}

// projectDocument is a Project resource as written.
type projectDocument struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
}

func (d fileDocument) project() (projectDocument, error) {
	var p projectDocument
	if err := yaml.Unmarshal(d.Source, &p); err != nil || p.Name == "" {
		return p, fmt.Errorf("%s:%d: a Project needs a name", d.Path, d.Line)
	}
	return p, nil
}

func applyRemote(ctx context.Context, c *client.Client, d fileDocument, out io.Writer) error {
	path := d.Path
	switch d.Kind {
	case "Project":
		p, err := d.project()
		if err != nil {
			return err
		}
		if _, err := c.Do(ctx, http.MethodPut, "/api/v1/projects/"+url.PathEscape(p.Name), nil, map[string]any{"description": p.Description}, nil); err != nil {
			return fmt.Errorf("%s:%d: project %s: %w", path, d.Line, p.Name, err)
		}
		fmt.Fprintf(out, "project %s applied\n", p.Name)
	case "Workflow":
		var res struct {
			Workflow struct{ Project, Name string }
			Version  struct{ Number int }
			Created  bool
		}
		_, err := c.Do(ctx, http.MethodPost, "/api/v1/workflows", nil, map[string]any{"source": string(d.Source), "filename": path}, &res)
		if err != nil {
			return offsetProblems(err, d.Line-1)
		}
		verb := "unchanged"
		if res.Created {
			verb = "created"
		}
		fmt.Fprintf(out, "workflow %s/%s version %d %s\n", res.Workflow.Project, res.Workflow.Name, res.Version.Number, verb)
	case gateway.KindVendor, gateway.KindConnector, gateway.KindModel:
		rd, err := parseResourceDocument(d)
		if err != nil {
			return err
		}
		var res struct{ Changed bool }
		_, err = c.Do(ctx, http.MethodPut, "/api/v1/"+resourcePlurals[rd.kind]+"/"+url.PathEscape(rd.name), nil, json.RawMessage(rd.body), &res)
		if err != nil {
			return rd.remoteProblems(err)
		}
		rd.printApplied(out, res.Changed)
	default:
		return d.unknownKind()
	}
	return nil
}

// resourceDocument is a gateway resource read from YAML.
type resourceDocument struct {
	doc        fileDocument
	kind, name string
	// body is the JSON of every field but kind, apiVersion and name.
	body []byte
	// lines maps field paths, as the API names them ("http.url",
	// "chain[0].connector"), to their line in the file.
	lines map[string]int
}

// Bounds of the YAML to JSON conversion; aliases could otherwise expand
// a small file into a huge document.
const (
	maxResourceDepth = 64
	maxResourceNodes = 200_000
)

// parseResourceDocument converts a Vendor, Connector or Model document to
// the JSON the API takes, remembering where each field is.
func parseResourceDocument(d fileDocument) (resourceDocument, error) {
	rd := resourceDocument{doc: d, kind: d.Kind, lines: map[string]int{}}
	var root yaml.Node
	if err := yaml.Unmarshal(d.Source, &root); err != nil {
		return rd, fmt.Errorf("%s:%d: not valid YAML: %v", d.Path, d.Line, err)
	}
	conv := yamlToJSON{lines: rd.lines, offset: d.Line - 1}
	v, err := conv.value(&root, "", 0)
	var le *lineError
	if errors.As(err, &le) {
		return rd, fmt.Errorf("%s:%d: %s", d.Path, le.line, le.msg)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return rd, fmt.Errorf("%s:%d: a %s is a mapping of fields", d.Path, d.Line, d.Kind)
	}
	if av, ok := obj["apiVersion"]; ok && av != "moat/v1" {
		return rd, fmt.Errorf("%s:%d: apiVersion must be moat/v1", d.Path, rd.line("apiVersion"))
	}
	rd.name, _ = obj["name"].(string)
	if rd.name == "" {
		return rd, fmt.Errorf("%s:%d: a %s needs a name", d.Path, d.Line, d.Kind)
	}
	delete(obj, "kind")
	delete(obj, "apiVersion")
	delete(obj, "name")
	if rd.body, err = json.Marshal(obj); err != nil {
		return rd, fmt.Errorf("%s:%d: %s %s: %w", d.Path, d.Line, strings.ToLower(d.Kind), rd.name, err)
	}
	return rd, nil
}

// line is the file line of field, or of the closest enclosing field that
// has one, or of the document.
func (rd resourceDocument) line(field string) int {
	for field != "" {
		if l, ok := rd.lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return rd.doc.Line
}

func (rd resourceDocument) problem(field, message string) string {
	return fmt.Sprintf("%s:%d: %s %s: %s", rd.doc.Path, rd.line(field), strings.ToLower(rd.kind), rd.name, message)
}

func (rd resourceDocument) printApplied(out io.Writer, changed bool) {
	verb := "unchanged"
	if changed {
		verb = "applied"
	}
	fmt.Fprintf(out, "%s %s %s\n", strings.ToLower(rd.kind), rd.name, verb)
}

// remoteProblems places the API's problems (located body.<field>) on the
// lines of the file.
func (rd resourceDocument) remoteProblems(err error) error {
	var p *client.Problem
	if !errors.As(err, &p) || len(p.Errors) == 0 {
		return errors.New(rd.problem("", err.Error()))
	}
	lines := make([]string, 0, len(p.Errors))
	for _, e := range p.Errors {
		switch {
		case strings.HasPrefix(e.Location, "body."):
			field := strings.TrimPrefix(e.Location, "body.")
			lines = append(lines, rd.problem(field, field+": "+e.Message))
		case e.Location == "path.name":
			lines = append(lines, rd.problem("name", "name: "+e.Message))
		default:
			lines = append(lines, rd.problem("", e.Message))
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

// localProblems places ApplyResource's problems on the lines of the file.
func (rd resourceDocument) localProblems(err error) error {
	var re *gateway.ResourceError
	if !errors.As(err, &re) {
		return errors.New(rd.problem("", err.Error()))
	}
	lines := make([]string, 0, len(re.Problems))
	for _, p := range re.Problems {
		if p.Kind != rd.kind || p.Name != rd.name {
			lines = append(lines, rd.problem("", p.Kind+" "+p.Name+": "+p.Message))
			continue
		}
		lines = append(lines, rd.problem(p.Field(), p.Message))
	}
	return errors.New(strings.Join(lines, "\n"))
}

// yamlToJSON converts a YAML node to values encoding/json writes.
type yamlToJSON struct {
	lines  map[string]int
	offset int
	nodes  int
}

// lineError is a conversion problem at a line of the file.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func (c *yamlToJSON) fail(nodeLine int, format string, args ...any) error {
	return &lineError{line: nodeLine + c.offset, msg: fmt.Sprintf(format, args...)}
}

func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (c *yamlToJSON) value(n *yaml.Node, path string, depth int) (any, error) {
	c.nodes++
	if c.nodes > maxResourceNodes || depth > maxResourceDepth {
		return nil, c.fail(n.Line, "the document is nested too deep or expands too far")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.value(n.Content[0], path, depth+1)
	case yaml.AliasNode:
		return c.value(n.Alias, path, depth+1)
	case yaml.MappingNode:
		obj := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				return nil, c.fail(k.Line, "keys must be plain strings (no merge keys)")
			}
			if _, dup := obj[k.Value]; dup {
				return nil, c.fail(k.Line, "%s is given twice", joinField(path, k.Value))
			}
			field := joinField(path, k.Value)
			c.lines[field] = k.Line + c.offset
			val, err := c.value(v, field, depth+1)
			if err != nil {
				return nil, err
			}
			obj[k.Value] = val
		}
		return obj, nil
	case yaml.SequenceNode:
		arr := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			field := fmt.Sprintf("%s[%d]", path, i)
			c.lines[field] = item.Line + c.offset
			val, err := c.value(item, field, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, val)
		}
		return arr, nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool", "!!int", "!!float":
			var v any
			if err := n.Decode(&v); err != nil {
				return nil, c.fail(n.Line, "%s: not a valid number or boolean", path)
			}
			if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
				return nil, c.fail(n.Line, "%s: must be a finite number", path)
			}
			return v, nil
		}
		// Strings, and what YAML would read as a timestamp or binary,
		// stay the text that was written (an API version like 2024-10-21).
		return n.Value, nil
	}
	return nil, c.fail(n.Line, "unsupported YAML")
}

func readDocuments(path string) ([]manifest.Document, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Size() > maxResourceFile {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, maxResourceFile>>20)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return manifest.Split(path, src)
}

// resourceFiles expands a directory into its YAML and JSON files, sorted.
func resourceFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	slices.Sort(files)
	return files, nil
}

var locationLine = regexp.MustCompile(`^(.*):(\d+):(\d+)$`)

// offsetProblems shifts the line numbers of a document's problems by the
// line the document starts on within its file.
func offsetProblems(err error, offset int) error {
	if offset == 0 {
		return err
	}
	var problems workflow.Problems
	if errors.As(err, &problems) {
		shifted := slices.Clone(problems)
		for i := range shifted {
			if shifted[i].Line > 0 {
				shifted[i].Line += offset
			}
		}
		return shifted
	}
	var p *client.Problem
	if errors.As(err, &p) {
		for i, e := range p.Errors {
			if m := locationLine.FindStringSubmatch(e.Location); m != nil {
				line, _ := strconv.Atoi(m[2])
				p.Errors[i].Location = fmt.Sprintf("%s:%d:%s", m[1], line+offset, m[3])
			}
		}
	}
	return err
}
