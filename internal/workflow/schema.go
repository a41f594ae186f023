package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

const schemaURL = "mem:///schema.json"

var printer = message.NewPrinter(language.English)

// noLoader refuses every external schema: a definition must not make Moat
// read files or fetch URLs.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external schema %s is not allowed; define it inline under $defs", url)
}

var (
	schemaCacheMu sync.Mutex
	schemaCache   = map[string]*jsonschema.Schema{}
)

// CompileSchema compiles a draft 2020-12 schema with format assertions on,
// refusing references outside it (compiling never reads a file or fetches a
// URL). Compiled schemas are cached by their JSON. Node types and the
// gateway use it for the schemas steps and requests carry.
func CompileSchema(doc map[string]any) (*jsonschema.Schema, error) {
	key, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("schema is not JSON: %w", err)
	}
	schemaCacheMu.Lock()
	sch, ok := schemaCache[string(key)]
	schemaCacheMu.Unlock()
	if ok {
		return sch, nil
	}
	// Read back from JSON: a schema written in Go may hold []string or int.
	plain, err := decodeJSON(key, false)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, plain); err != nil {
		return nil, err
	}
	sch, err = c.Compile(schemaURL)
	if err != nil {
		return nil, err
	}
	schemaCacheMu.Lock()
	if len(schemaCache) < 1024 {
		schemaCache[string(key)] = sch
	}
	schemaCacheMu.Unlock()
	return sch, nil
}

// fieldProblem is a problem relative to some base pointer.
type fieldProblem struct {
	ptr      string // relative pointer
	msg      string
	label    string // pointer that names the field in the message
	hasLabel bool   // when false, ptr names it
}

// name returns the pointer that names the problem's field in a message.
func (fp fieldProblem) name() string {
	if fp.hasLabel {
		return fp.label
	}
	return fp.ptr
}

var schemaURLRE = regexp.MustCompile(regexp.QuoteMeta(schemaURL) + `(#[^"'\s]*)?`)

// schemaCompileProblems explains why a schema did not compile, with
// pointers relative to the schema.
func schemaCompileProblems(err error) []fieldProblem {
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		var ve *jsonschema.ValidationError
		if errors.As(sve.Err, &ve) {
			probs := validationProblems(ve)
			for i := range probs {
				probs[i].msg = "invalid schema: " + probs[i].msg
			}
			return probs
		}
	}
	msg := err.Error()
	ptr := ""
	if m := schemaURLRE.FindStringSubmatch(msg); m != nil && len(m[1]) > 1 {
		ptr = strings.TrimPrefix(m[1], "#")
	}
	msg = schemaURLRE.ReplaceAllStringFunc(msg, func(s string) string {
		if _, frag, ok := strings.Cut(s, "#"); ok && frag != "" {
			return frag
		}
		return "schema"
	})
	return []fieldProblem{{ptr: ptr, msg: "invalid schema: " + msg}}
}

// validationProblems flattens a validation error to its leaves.
func validationProblems(ve *jsonschema.ValidationError) []fieldProblem {
	var out []fieldProblem
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if alternatives(e) {
			// Explain the alternative the value was meant for: the first
			// whose failure is not just the wrong type.
			var wants []string
			got := ""
			for _, branch := range e.Causes {
				t, ok := onlyTypeMismatch(branch, len(e.InstanceLocation))
				if !ok {
					walk(branch)
					return
				}
				got = t.Got
				for _, w := range t.Want {
					if !slices.Contains(wants, w) {
						wants = append(wants, w)
					}
				}
			}
			out = append(out, fieldProblem{ptr: joinPointer(e.InstanceLocation), msg: fmt.Sprintf("got %s, want %s", got, strings.Join(wants, " or "))})
			return
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		loc := joinPointer(e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				out = append(out, fieldProblem{ptr: child(loc, p), msg: fmt.Sprintf("unknown field %q", p), label: loc, hasLabel: true})
			}
			return
		case *kind.Required:
			for _, p := range k.Missing {
				out = append(out, fieldProblem{ptr: loc, msg: fmt.Sprintf("missing required field %q", p)})
			}
			return
		case *kind.FalseSchema:
			out = append(out, fieldProblem{ptr: loc, msg: "not allowed here"})
			return
		}
		out = append(out, fieldProblem{ptr: loc, msg: e.ErrorKind.LocalizedString(printer)})
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].ptr < out[j].ptr })
	return out
}

// alternatives reports whether e is an anyOf or oneOf that no alternative
// matched.
func alternatives(e *jsonschema.ValidationError) bool {
	if len(e.Causes) == 0 {
		return false
	}
	switch k := e.ErrorKind.(type) {
	case *kind.AnyOf:
		return true
	case *kind.OneOf:
		return k.Subschemas == nil
	}
	return false
}

// onlyTypeMismatch returns the type error when that is all that is wrong
// with the value at depth (its instance location's length).
func onlyTypeMismatch(e *jsonschema.ValidationError, depth int) (*kind.Type, bool) {
	for len(e.Causes) == 1 {
		e = e.Causes[0]
	}
	t, ok := e.ErrorKind.(*kind.Type)
	if !ok || len(e.Causes) > 0 || len(e.InstanceLocation) != depth {
		return nil, false
	}
	return t, true
}

// validateValue validates v against sch; problems have pointers relative
// to v.
func validateValue(sch *jsonschema.Schema, v any) []fieldProblem {
	err := sch.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		return validationProblems(ve)
	}
	return []fieldProblem{{msg: err.Error()}}
}

// dotted names a pointer for a message: base.a.b[2].
func dotted(base, ptr string) string {
	var b strings.Builder
	b.WriteString(base)
	for _, t := range splitPointer(ptr) {
		if t != "" && strings.Trim(t, "0123456789") == "" {
			fmt.Fprintf(&b, "[%s]", t)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(t)
	}
	return b.String()
}

// schema annotations Moat reads from input schemas.
var trustValues = map[string]bool{"trusted": true, "untrusted": true}

// schemaNameMaps are schema keywords whose object values map names (not
// keywords) to schemas.
var schemaNameMaps = map[string]bool{
	"properties": true, "patternProperties": true, "$defs": true,
	"definitions": true, "dependentSchemas": true,
}

// schemaDataKeywords hold data, not schemas.
var schemaDataKeywords = map[string]bool{
	"const": true, "enum": true, "default": true, "examples": true,
}

// checkAnnotations checks x-trust and x-data-class wherever a schema may
// carry them.
func checkAnnotations(v any, ptr string, c *problems) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := child(ptr, k)
			switch {
			case k == "x-trust":
				s, ok := e.(string)
				if !ok || !trustValues[s] {
					c.add(p, "x-trust must be \"trusted\" or \"untrusted\"")
				}
			case k == "x-data-class":
				if s, ok := e.(string); !ok || s == "" {
					c.add(p, "x-data-class must be a data class name such as \"pii.email\"")
				}
			case schemaNameMaps[k]:
				if m, ok := e.(map[string]any); ok {
					for name, sub := range m {
						checkAnnotations(sub, child(p, name), c)
					}
				}
			case schemaDataKeywords[k]:
			default:
				checkAnnotations(e, p, c)
			}
		}
	case []any:
		for i, e := range x {
			checkAnnotations(e, index(ptr, i), c)
		}
	}
}

// ValidateInput checks a run's input against the definition's input schema.
// Each problem's Pointer is the location within the input. Without an
// input schema any JSON object is accepted.
func (p *Plan) ValidateInput(input any) Problems {
	if p.inputSchema == nil {
		switch input.(type) {
		case nil, map[string]any:
			return nil
		}
		return Problems{{Message: "input must be a JSON object, not " + describe(input)}}
	}
	if input == nil {
		input = map[string]any{}
	}
	var out Problems
	for _, fp := range validateValue(p.inputSchema, input) {
		out = append(out, Problem{Pointer: fp.ptr, Message: dotted("input", fp.name()) + ": " + fp.msg})
	}
	return out
}
