package gateway

import (
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/moatproject/moat/internal/detect"
)

var schemaPrinter = message.NewPrinter(language.English)

// schemaMessages validates v and explains each failure without the
// answer's values: messages name the field, the rule and what the schema
// wants, never what the answer held (the validator's own messages quote
// values for patterns and formats, so they are not used).
func schemaMessages(sch *jsonschema.Schema, v any) ([]string, error) {
	err := sch.Validate(v)
	if err == nil {
		return nil, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, fmt.Errorf("gateway: check answer: validate schema: %w", err)
	}
	var out []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		at := fieldName(e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.AnyOf:
			out = append(out, at+": matches none of the allowed alternatives")
			return
		case *kind.OneOf:
			if k.Subschemas == nil {
				out = append(out, at+": matches none of the allowed alternatives")
			} else {
				out = append(out, at+": matches more than one of the alternatives, want exactly one")
			}
			return
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		switch k := e.ErrorKind.(type) {
		case *kind.Type:
			out = append(out, fmt.Sprintf("%s: got %s, want %s", at, k.Got, strings.Join(k.Want, " or ")))
		case *kind.Required:
			for _, m := range k.Missing {
				out = append(out, fmt.Sprintf("%s: missing required field %s", at, quoteName(m)))
			}
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				out = append(out, fmt.Sprintf("%s: unexpected field %s", at, quoteName(p)))
			}
		case *kind.FalseSchema:
			out = append(out, at+": not allowed here")
		case *kind.Enum, *kind.Const:
			// These print only what the schema allows.
			out = append(out, at+": "+e.ErrorKind.LocalizedString(schemaPrinter))
		case *kind.Format:
			out = append(out, fmt.Sprintf("%s: is not a valid %s", at, k.Want))
		case *kind.Pattern:
			out = append(out, fmt.Sprintf("%s: does not match the pattern %s", at, k.Want))
		case *kind.MinLength:
			out = append(out, fmt.Sprintf("%s: must be at least %d characters long", at, k.Want))
		case *kind.MaxLength:
			out = append(out, fmt.Sprintf("%s: must be at most %d characters long", at, k.Want))
		case *kind.MinItems:
			out = append(out, fmt.Sprintf("%s: must have at least %d items", at, k.Want))
		case *kind.MaxItems:
			out = append(out, fmt.Sprintf("%s: must have at most %d items", at, k.Want))
		case *kind.MinProperties:
			out = append(out, fmt.Sprintf("%s: must have at least %d fields", at, k.Want))
		case *kind.MaxProperties:
			out = append(out, fmt.Sprintf("%s: must have at most %d fields", at, k.Want))
		case *kind.Minimum:
			out = append(out, fmt.Sprintf("%s: must be at least %s", at, k.Want.RatString()))
		case *kind.Maximum:
			out = append(out, fmt.Sprintf("%s: must be at most %s", at, k.Want.RatString()))
		case *kind.ExclusiveMinimum:
			out = append(out, fmt.Sprintf("%s: must be greater than %s", at, k.Want.RatString()))
		case *kind.ExclusiveMaximum:
			out = append(out, fmt.Sprintf("%s: must be less than %s", at, k.Want.RatString()))
		case *kind.MultipleOf:
			out = append(out, fmt.Sprintf("%s: must be a multiple of %s", at, k.Want.RatString()))
		case *kind.UniqueItems:
			out = append(out, at+": items must be unique")
		default:
			out = append(out, fmt.Sprintf("%s: fails the schema's %q rule", at, strings.Join(e.ErrorKind.KeywordPath(), "/")))
		}
	}
	walk(ve)
	if len(out) == 0 {
		out = append(out, "answer: does not match the schema")
	}
	return out, nil
}

// fieldName names an instance location for a message: answer.a.b[2].
// Names that come from the answer and could hold a value (not short
// identifiers, or holding something the detectors see) are shown as "?".
func fieldName(loc []string) string {
	var b strings.Builder
	b.WriteString("answer")
	for _, t := range loc {
		if t != "" && strings.Trim(t, "0123456789") == "" && len(t) <= 9 {
			b.WriteString("[" + t + "]")
			continue
		}
		b.WriteByte('.')
		if safeName(t) {
			b.WriteString(t)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// quoteName quotes a field name for a message if it is safe to show.
func quoteName(s string) string {
	if safeName(s) {
		return fmt.Sprintf("%q", s)
	}
	return "(a name not shown)"
}

// safeName reports whether s is an identifier-like field name that holds
// nothing the detectors would report.
func safeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '$') {
			return false
		}
	}
	return len(detect.Scan(s)) == 0
}
