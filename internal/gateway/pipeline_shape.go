package gateway

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moatproject/moat/internal/connectors"
	"github.com/moatproject/moat/internal/workflow"
)

// Bounds of the Shape stage; MaxPromptBytes (Config) bounds the total.
const (
	MaxMessages        = 256
	MaxDataItems       = 64
	MaxLabels          = 64
	MaxLabelBytes      = 256
	MaxSchemaBytes     = 64 << 10
	MaxAnswerTokens    = 1_000_000
	MaxExamples        = 1000
	MaxExampleBytes    = 8 << 10
	MaxRestoreClasses  = 64
	MaxClassBytes      = 128
	maxIdentityBytes   = 256
	maxModelNameBytes  = 256
	maxTemperature     = 2.0
	defaultPromptBytes = 1 << 20
	maxAnswerBytes     = 1 << 20
)

// checkIdentity is the Who stage's check of who asks.
func checkIdentity(id Identity) *Error {
	forbidden := func(msg string) *Error { return &Error{Stage: "who", Code: CodeForbidden, Message: msg} }
	for _, s := range []string{id.Kind, id.ID, id.Name, id.Role, id.Project, id.Workflow, id.Run, id.Step} {
		if len(s) > maxIdentityBytes || !utf8.ValidString(s) {
			return forbidden(fmt.Sprintf("identity fields must be valid UTF-8 of at most %d bytes", maxIdentityBytes))
		}
	}
	switch id.Kind {
	case "run", "key":
	default:
		return forbidden(`identity kind must be "run" or "key"`)
	}
	if id.ID == "" {
		return forbidden("identity has no id")
	}
	if id.Kind == "key" && id.Role != "admin" && id.Role != "ai" {
		return forbidden(`an API key needs the role "admin" or "ai" to call models`)
	}
	return nil
}

func invalid(format string, args ...any) *Error {
	return &Error{Stage: "shape", Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

// checkShape is the Shape stage: every field of the request bounded and
// well formed. It returns the compiled schema when the request has one.
func checkShape(req *Request, maxPromptBytes int) (*jsonschema.Schema, *Error) {
	if len(req.Messages) == 0 && len(req.Data) == 0 {
		return nil, invalid("the request has no messages and no data")
	}
	if len(req.Model) > maxModelNameBytes || len(req.Connector) > maxModelNameBytes || !utf8.ValidString(req.Model) || !utf8.ValidString(req.Connector) {
		return nil, invalid("model and connector names must be valid UTF-8 of at most %d bytes", maxModelNameBytes)
	}
	if len(req.Messages) > MaxMessages {
		return nil, invalid("%d messages, over the limit of %d", len(req.Messages), MaxMessages)
	}
	if len(req.Data) > MaxDataItems {
		return nil, invalid("%d data items, over the limit of %d", len(req.Data), MaxDataItems)
	}
	if len(req.Examples) > MaxExamples {
		return nil, invalid("%d examples, over the limit of %d", len(req.Examples), MaxExamples)
	}
	total := 0
	for i, m := range req.Messages {
		switch m.Role {
		case connectors.System, connectors.User, connectors.Assistant:
		default:
			return nil, invalid(`message %d: role must be "system", "user" or "assistant"`, i+1)
		}
		if !validTrust(m.Trust) {
			return nil, invalid(`message %d: trust must be "trusted" or "untrusted"`, i+1)
		}
		if !utf8.ValidString(m.Content) {
			return nil, invalid("message %d is not valid UTF-8", i+1)
		}
		total += len(m.Content)
	}
	names := make(map[string]bool, len(req.Data))
	for i, d := range req.Data {
		if !validDataName(d.Name) {
			return nil, invalid("data item %d: name must match [a-z][a-z0-9_]{0,63}", i+1)
		}
		if names[d.Name] {
			return nil, invalid("data item %q is given twice", d.Name)
		}
		names[d.Name] = true
		if !validTrust(d.Trust) {
			return nil, invalid(`data item %q: trust must be "trusted" or "untrusted"`, d.Name)
		}
		if d.Class != "" && !validClass(d.Class) {
			return nil, invalid("data item %q: class must match [a-z][a-z0-9_.-]* and be at most %d bytes", d.Name, MaxClassBytes)
		}
		if !utf8.ValidString(d.Value) {
			return nil, invalid("data item %q is not valid UTF-8", d.Name)
		}
		total += len(d.Name) + len(d.Value)
	}
	for i, e := range req.Examples {
		if len(e.Text) > MaxExampleBytes {
			return nil, invalid("example %d is %d bytes, over the limit of %d", i+1, len(e.Text), MaxExampleBytes)
		}
		if len(e.Label) > MaxLabelBytes {
			return nil, invalid("example %d: label over the limit of %d bytes", i+1, MaxLabelBytes)
		}
		if !utf8.ValidString(e.Text) || !utf8.ValidString(e.Label) {
			return nil, invalid("example %d is not valid UTF-8", i+1)
		}
		total += len(e.Text) + len(e.Label)
	}
	if total > maxPromptBytes {
		return nil, invalid("the prompt is %d bytes, over the limit of %d (MaxPromptBytes)", total, maxPromptBytes)
	}
	if len(req.Labels) > MaxLabels {
		return nil, invalid("%d labels, over the limit of %d", len(req.Labels), MaxLabels)
	}
	labels := make(map[string]bool, len(req.Labels))
	for i, l := range req.Labels {
		if strings.TrimSpace(l) == "" || len(l) > MaxLabelBytes || !utf8.ValidString(l) {
			return nil, invalid("label %d must be non-empty valid UTF-8 of at most %d bytes", i+1, MaxLabelBytes)
		}
		if labels[l] {
			return nil, invalid("label %d is given twice", i+1)
		}
		labels[l] = true
	}
	if req.MaxTokens < 0 || req.MaxTokens > MaxAnswerTokens {
		return nil, invalid("maxTokens must be between 0 and %d", MaxAnswerTokens)
	}
	if t := req.Temperature; t != nil && (math.IsNaN(*t) || *t < 0 || *t > maxTemperature) {
		return nil, invalid("temperature must be between 0 and %g", maxTemperature)
	}
	switch req.Injection {
	case "", InjectionBlock, InjectionFence:
	default:
		return nil, invalid(`injection must be "block" or "fence"`)
	}
	if len(req.Restore) > MaxRestoreClasses {
		return nil, invalid("%d classes to restore, over the limit of %d", len(req.Restore), MaxRestoreClasses)
	}
	for i, c := range req.Restore {
		if !validClass(c) {
			return nil, invalid("restore class %d must match [a-z][a-z0-9_.-]* and be at most %d bytes", i+1, MaxClassBytes)
		}
	}
	if len(req.SchemaName) > maxModelNameBytes || !utf8.ValidString(req.SchemaName) {
		return nil, invalid("schema name must be valid UTF-8 of at most %d bytes", maxModelNameBytes)
	}
	if req.Schema == nil {
		return nil, nil
	}
	sch, err := compileRequestSchema(req.Schema)
	if err != nil {
		return nil, err
	}
	return sch, nil
}

func validTrust(t string) bool { return t == "" || t == Trusted || t == Untrusted }

// validDataName: [a-z][a-z0-9_]{0,63}, safe to name in messages and tags.
func validDataName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validClass: a data class such as pii.email or customer.content, safe to
// name in messages and records.
func validClass(s string) bool {
	if s == "" || len(s) > MaxClassBytes || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// Compiled request schemas are kept by their JSON, as workflows send the
// same schema on every call; the cache is bounded.
// compileRequestSchema compiles a request's JSON Schema within the size
// limit, as workflow.CompileSchema does for definitions: formats asserted,
// nothing outside the schema loaded.
func compileRequestSchema(doc map[string]any) (*jsonschema.Schema, *Error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, invalid("schema is not JSON")
	}
	if len(raw) > MaxSchemaBytes {
		return nil, invalid("schema is %d bytes, over the limit of %d", len(raw), MaxSchemaBytes)
	}
	sch, err := workflow.CompileSchema(doc)
	if err != nil {
		return nil, invalid("schema is not valid: %v", err)
	}
	return sch, nil
}
