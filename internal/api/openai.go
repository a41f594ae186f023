package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/jsontext"
)

// The OpenAI-compatible endpoint: existing tools (the OpenAI SDKs, n8n, Dify,
// curl) get Moat's protection by pointing their base URL at Moat's /v1. Every
// call goes through the same gateway pipeline as a workflow's AI step.
// Errors are in OpenAI's shape rather than problem+json, because that is the
// shape the SDKs parse.

// Limits on what one chat request may hold, beyond the 1 MiB body.
const (
	maxChatMessages     = 1000
	maxContentParts     = 256
	maxModelNameBytes   = 256
	maxSchemaDepth      = 64
	maxCompletionTokens = 1 << 20
)

// Moat's own headers on every chat answer.
const (
	headerRequestID = "X-Moat-Request-Id"
	headerFindings  = "X-Moat-Findings"
	headerOverhead  = "X-Moat-Overhead-Us"
	headerInjection = "X-Moat-Injection"
	headerRestore   = "X-Moat-Restore"
)

// OpenAI's error types.
const (
	errTypeInvalid    = "invalid_request_error"
	errTypeAuth       = "authentication_error"
	errTypePermission = "permission_error"
	errTypeRateLimit  = "rate_limit_error"
	errTypeAPI        = "api_error"
)

// openAIPath reports whether a path belongs to the OpenAI-compatible API,
// whose every answer (the middleware's included) is in OpenAI's shape.
func openAIPath(path string) bool {
	return path == "/v1" || strings.HasPrefix(path, "/v1/")
}

// openAIError is an error as OpenAI's API answers it.
type openAIError struct {
	Status     int
	Type       string
	Code       string
	Param      string // "" is written as null
	Message    string
	RetryAfter time.Duration
}

func (e *openAIError) Error() string { return "api: " + e.Message }

func invalidParam(param, format string, args ...any) *openAIError {
	return &openAIError{Status: http.StatusBadRequest, Type: errTypeInvalid, Code: gateway.CodeInvalid, Param: param, Message: fmt.Sprintf(format, args...)}
}

// body is the JSON object the SDKs read.
func (e *openAIError) body() map[string]any {
	var param any
	if e.Param != "" {
		param = e.Param
	}
	var code any
	if e.Code != "" {
		code = e.Code
	}
	return map[string]any{"error": map[string]any{"message": e.Message, "type": e.Type, "param": param, "code": code}}
}

func writeOpenAIError(w http.ResponseWriter, e *openAIError) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(e.RetryAfter.Seconds())), 10))
	}
	writeJSON(w, e.Status, e.body())
}

// gatewayError answers a gateway failure the way OpenAI answers the nearest
// failure of its own, keeping the gateway's code so clients can tell them
// apart. The gateway's messages name types and places, never values.
func gatewayError(err error) *openAIError {
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		return &openAIError{Status: http.StatusInternalServerError, Type: errTypeAPI, Code: gateway.CodeInternal, Message: "internal error; see the server log"}
	}
	e := &openAIError{Code: ge.Code, Message: ge.Message, RetryAfter: ge.RetryAfter}
	switch ge.Code {
	case gateway.CodeInvalid:
		e.Status, e.Type = http.StatusBadRequest, errTypeInvalid
	case gateway.CodeBlocked, gateway.CodeInjection:
		// What an API client sends the gateway is all messages; the
		// message says which one and where.
		e.Status, e.Type, e.Param = http.StatusBadRequest, errTypeInvalid, "messages"
	case gateway.CodeUnknownModel:
		e.Status, e.Type, e.Code, e.Param = http.StatusNotFound, errTypeInvalid, "model_not_found", "model"
	case gateway.CodeForbidden:
		e.Status, e.Type = http.StatusForbidden, errTypePermission
	case gateway.CodeRateLimited, gateway.CodeBudget:
		e.Status, e.Type = http.StatusTooManyRequests, errTypeRateLimit
	case gateway.CodeUnavailable, gateway.CodeRejected, gateway.CodeCheckFailed:
		e.Status, e.Type = http.StatusBadGateway, errTypeAPI
	default:
		e.Status, e.Type, e.Code = http.StatusInternalServerError, errTypeAPI, gateway.CodeInternal
	}
	if e.Message == "" {
		e.Message = "the AI call failed (" + e.Code + ")"
	}
	return e
}

// chatRequest is a decoded POST /v1/chat/completions body.
type chatRequest struct {
	Model        string
	Messages     []gateway.Message
	Stream       bool
	IncludeUsage bool
	MaxTokens    int
	Temperature  *float64
	Schema       map[string]any
	SchemaName   string
}

// Fields Moat accepts and ignores: labels for the caller's own bookkeeping
// (user, metadata, store, service_tier) and sampling hints whose absence
// does not change what an answer may contain (top_p, seed, penalties,
// reasoning effort; parallel tool calls, with no tools).
var ignoredFields = []string{"user", "metadata", "store", "service_tier", "top_p", "seed",
	"frequency_penalty", "presence_penalty", "reasoning_effort", "parallel_tool_calls"}

// refusal is a feature Moat's gateway does not implement: its field is
// refused unless it holds one of the values that ask for nothing.
type refusal struct {
	message string
	allowed []string // JSON literals
}

// emptyValues ask for nothing: clients that send "tools": [] or
// "logprobs": false are not refused for it.
var emptyValues = []string{"null", "false", "[]", "{}", `""`, "0"}

// refusedFields are refused rather than ignored, so a client never
// believes Moat honoured them. stop is among them because ignoring it would
// change the answer a client relies on.
var refusedFields = map[string]refusal{
	"tools":              {"tools are not supported by Moat's gateway", emptyValues},
	"functions":          {"functions are not supported by Moat's gateway", emptyValues},
	"tool_choice":        {"tool_choice is not supported by Moat's gateway (tools are not)", []string{"null", `"none"`}},
	"function_call":      {"function_call is not supported by Moat's gateway (functions are not)", []string{"null", `"none"`}},
	"logprobs":           {"logprobs are not supported by Moat's gateway", emptyValues},
	"top_logprobs":       {"top_logprobs are not supported by Moat's gateway", emptyValues},
	"logit_bias":         {"logit_bias is not supported by Moat's gateway", emptyValues},
	"audio":              {"audio is not supported by Moat's gateway", emptyValues},
	"prediction":         {"prediction is not supported by Moat's gateway", emptyValues},
	"web_search_options": {"web_search_options are not supported by Moat's gateway", emptyValues},
	"stop":               {"stop sequences are not supported by Moat's gateway", emptyValues},
}

// decodeChatRequest reads a chat body strictly: one JSON object, known
// fields only (names match exactly, each at most once), each of the right
// type and within bounds. Errors come in the order of the body, so the
// same body always gets the same one.
func decodeChatRequest(body []byte) (chatRequest, *openAIError) {
	var c chatRequest
	d := &chatDecoder{dec: jsontext.NewTokens(body)}
	tok, e := d.token()
	if e != nil {
		return c, e
	}
	if tok != json.Delim('{') {
		return c, invalidParam("", "the body is not a JSON object")
	}
	seen := map[string]bool{}
	unknown, e := d.fields("", func(name, _ string) (bool, *openAIError) {
		seen[name] = true
		return d.chatField(&c, name)
	})
	if e != nil {
		return c, e
	}
	if _, err := d.dec.Token(); err != io.EOF {
		return c, invalidParam("", "the body is not a JSON object: unexpected data after the object")
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return c, invalidParam(shortName(unknown[0]), "unknown field(s) %s: Moat's gateway does not know them", quoteNames(unknown))
	}
	switch {
	case !seen["model"]:
		return c, invalidParam("model", "model is required")
	case !seen["messages"]:
		return c, invalidParam("messages", "messages is required")
	case c.IncludeUsage && !c.Stream:
		return c, invalidParam("stream_options", "stream_options is only allowed with stream: true")
	}
	return c, nil
}

// chatField reads the value of one top-level field; false for a field it
// does not know, whose value it leaves unread.
func (d *chatDecoder) chatField(c *chatRequest, name string) (bool, *openAIError) {
	var e *openAIError
	switch name {
	case "model":
		e = d.model(c)
	case "messages":
		e = d.messages(c)
	case "stream":
		c.Stream, _, e = d.boolean(name)
	case "stream_options":
		e = d.streamOptions(c)
	case "max_tokens", "max_completion_tokens":
		e = d.maxTokens(c, name)
	case "temperature":
		var t float64
		var null bool
		if t, null, e = d.number(name); e == nil && !null {
			if t < 0 || t > 2 {
				return true, invalidParam(name, "temperature must be between 0 and 2")
			}
			c.Temperature = &t
		}
	case "n":
		var n float64
		var null bool
		if n, null, e = d.number(name); e == nil && !null && n != 1 {
			e = invalidParam(name, "n must be 1: Moat's gateway returns one choice")
		}
	case "response_format":
		e = d.responseFormat(c)
	case "modalities":
		e = d.modalities()
	default:
		if r, ok := refusedFields[name]; ok {
			return true, d.refuse(name, r)
		}
		if slices.Contains(ignoredFields, name) {
			_, e = d.raw()
			return true, e
		}
		return false, nil
	}
	return true, e
}

// chatDecoder walks a chat body's tokens once. Decoding it level by level
// (the body, each message, each part) rescanned a long message at every
// level: 58 µs for a 2 KB prompt.
type chatDecoder struct {
	dec *jsontext.Tokens
}

func (d *chatDecoder) token() (json.Token, *openAIError) {
	tok, err := d.dec.Token()
	if err != nil {
		return nil, invalidParam("", "the body is not a JSON object: %s", jsonProblem(err))
	}
	return tok, nil
}

// raw reads a value whole.
func (d *chatDecoder) raw() (json.RawMessage, *openAIError) {
	raw, err := d.dec.Raw()
	if err != nil {
		return nil, invalidParam("", "the body is not a JSON object: %s", jsonProblem(err))
	}
	return raw, nil
}

// fields reads an object's members after its '{'. field reads the value
// of a name it knows and reports false for one it does not; those are
// skipped and returned, for the caller to refuse once it has checked what
// matters more (a tool message is refused as one, not for its
// tool_call_id). A repeated name is refused: parsers disagree on which
// one counts.
func (d *chatDecoder) fields(param string, field func(name, param string) (bool, *openAIError)) ([]string, *openAIError) {
	var unknown []string
	seen := make(map[string]struct{}, 8)
	for d.dec.More() {
		tok, e := d.token()
		if e != nil {
			return nil, e
		}
		name, _ := tok.(string)
		if _, dup := seen[name]; dup {
			return nil, invalidParam(param, "field %q appears more than once%s", shortName(name), within(param))
		}
		seen[name] = struct{}{}
		known, e := field(name, join(param, name))
		if e != nil {
			return nil, e
		}
		if !known {
			if _, e := d.raw(); e != nil {
				return nil, e
			}
			unknown = append(unknown, name)
		}
	}
	_, e := d.token() // the object's '}'
	return unknown, e
}

func join(param, name string) string {
	if param == "" {
		return name
	}
	return param + "." + name
}

func within(param string) string {
	if param == "" {
		return ""
	}
	return " in " + param
}

// refuseUnknown refuses the fields of a nested object fields did not know.
func refuseUnknown(param string, unknown []string) *openAIError {
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return invalidParam(param+"."+shortName(unknown[0]), "unknown field(s) %s in %s", quoteNames(unknown), param)
}

// object reads the '{' of a nested object; false when the value is null.
func (d *chatDecoder) object(param string) (bool, *openAIError) {
	tok, e := d.token()
	switch {
	case e != nil:
		return false, e
	case tok == nil:
		return false, nil
	case tok != json.Delim('{'):
		return false, invalidParam(param, "%s must be an object", param)
	}
	return true, nil
}

// str reads a string; null reports true.
func (d *chatDecoder) str(param, want string) (string, bool, *openAIError) {
	tok, e := d.token()
	if e != nil {
		return "", false, e
	}
	switch v := tok.(type) {
	case string:
		return v, false, nil
	case nil:
		return "", true, nil
	}
	return "", false, invalidParam(param, "%s must be %s", param, want)
}

func (d *chatDecoder) boolean(param string) (bool, bool, *openAIError) {
	tok, e := d.token()
	if e != nil {
		return false, false, e
	}
	switch v := tok.(type) {
	case bool:
		return v, false, nil
	case nil:
		return false, true, nil
	}
	return false, false, invalidParam(param, "%s must be a boolean", param)
}

func (d *chatDecoder) number(param string) (float64, bool, *openAIError) {
	tok, e := d.token()
	if e != nil {
		return 0, false, e
	}
	switch v := tok.(type) {
	case float64:
		return v, false, nil
	case nil:
		return 0, true, nil
	}
	return 0, false, invalidParam(param, "%s must be a number", param)
}

func (d *chatDecoder) refuse(param string, r refusal) *openAIError {
	raw, e := d.raw()
	if e != nil {
		return e
	}
	if slices.Contains(r.allowed, string(bytes.TrimSpace(raw))) {
		return nil
	}
	return invalidParam(param, "%s", r.message)
}

func (d *chatDecoder) model(c *chatRequest) *openAIError {
	model, null, e := d.str("model", "a string")
	switch {
	case e != nil:
		return e
	case null:
		return invalidParam("model", "model must be a string")
	case model == "":
		return invalidParam("model", "model must not be empty")
	case len(model) > maxModelNameBytes:
		return invalidParam("model", "model is longer than %d bytes", maxModelNameBytes)
	}
	c.Model = model
	return nil
}

func (d *chatDecoder) streamOptions(c *chatRequest) *openAIError {
	const param = "stream_options"
	if ok, e := d.object(param); !ok || e != nil {
		return e
	}
	unknown, e := d.fields(param, func(name, p string) (bool, *openAIError) {
		if name != "include_usage" {
			return false, nil
		}
		var e *openAIError
		c.IncludeUsage, _, e = d.boolean(p)
		return true, e
	})
	if e != nil {
		return e
	}
	return refuseUnknown(param, unknown)
}

// maxTokens reads max_tokens or max_completion_tokens; OpenAI treats them
// as one limit, so two different values are refused.
func (d *chatDecoder) maxTokens(c *chatRequest, param string) *openAIError {
	f, null, e := d.number(param)
	if e != nil || null {
		return e
	}
	if f != math.Trunc(f) || f < 1 || f > maxCompletionTokens {
		return invalidParam(param, "%s must be an integer between 1 and %d", param, maxCompletionTokens)
	}
	n := int(f)
	if c.MaxTokens != 0 && c.MaxTokens != n {
		return invalidParam(param, "max_tokens and max_completion_tokens differ; send one")
	}
	c.MaxTokens = n
	return nil
}

// modalities accepts only a text answer, which is what Moat returns.
func (d *chatDecoder) modalities() *openAIError {
	const param = "modalities"
	raw, e := d.raw()
	if e != nil {
		return e
	}
	var m []string
	if err := json.Unmarshal(raw, &m); err != nil {
		return invalidParam(param, "modalities must be an array of strings")
	}
	for _, v := range m {
		if v != "text" {
			return invalidParam(param, "modalities other than text are not supported by Moat's gateway")
		}
	}
	return nil
}

// schemaNamePattern is OpenAI's rule for a json_schema's name.
var schemaNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// responseFormat reads response_format. Its json_schema may come before
// its type, so both are read first and judged together.
func (d *chatDecoder) responseFormat(c *chatRequest) *openAIError {
	const param = "response_format"
	if ok, e := d.object(param); !ok || e != nil {
		return e
	}
	var typ string
	var hasType, hasSchema bool
	var name string
	var schema map[string]any
	unknown, e := d.fields(param, func(field, p string) (bool, *openAIError) {
		var e *openAIError
		switch field {
		case "type":
			hasType = true
			typ, _, e = d.str(p, "a string")
		case "json_schema":
			hasSchema = true
			name, schema, e = d.jsonSchema(p)
		default:
			return false, nil
		}
		return true, e
	})
	if e != nil {
		return e
	}
	if e := refuseUnknown(param, unknown); e != nil {
		return e
	}
	if !hasType {
		return invalidParam(param+".type", "response_format.type is required")
	}
	switch typ {
	case "text":
	case "json_object":
		c.Schema = map[string]any{"type": "object"}
	case "json_schema":
		if !hasSchema {
			return invalidParam(param+".json_schema", "response_format.json_schema is required with type json_schema")
		}
		c.Schema, c.SchemaName = schema, name
		return nil
	default:
		return invalidParam(param+".type", "response_format.type must be text, json_object or json_schema")
	}
	if hasSchema {
		return invalidParam(param+".json_schema", "response_format.json_schema is only allowed with type json_schema")
	}
	return nil
}

func (d *chatDecoder) jsonSchema(param string) (string, map[string]any, *openAIError) {
	ok, e := d.object(param)
	if !ok || e != nil {
		if e == nil {
			e = invalidParam(param, "%s must be an object", param)
		}
		return "", nil, e
	}
	var name string
	var schema map[string]any
	var hasSchema bool
	unknown, e := d.fields(param, func(field, p string) (bool, *openAIError) {
		var e *openAIError
		switch field {
		case "name":
			name, _, e = d.str(p, "a string")
		case "description":
			_, _, e = d.str(p, "a string")
		case "strict":
			// Accepted and ignored: Moat checks every answer against the
			// schema whatever the upstream promises.
			_, _, e = d.boolean(p)
		case "schema":
			hasSchema = true
			schema, e = d.schema(p)
		default:
			return false, nil
		}
		return true, e
	})
	if e != nil {
		return "", nil, e
	}
	if e := refuseUnknown(param, unknown); e != nil {
		return "", nil, e
	}
	if !schemaNamePattern.MatchString(name) {
		return "", nil, invalidParam(param+".name", "%s.name must be 1 to 64 letters, digits, '_' or '-'", param)
	}
	if !hasSchema || schema == nil {
		return "", nil, invalidParam(param+".schema", "%s.schema is required", param)
	}
	return name, schema, nil
}

func (d *chatDecoder) schema(param string) (map[string]any, *openAIError) {
	raw, e := d.raw()
	if e != nil {
		return nil, e
	}
	if depth(raw) > maxSchemaDepth {
		return nil, invalidParam(param, "%s is nested deeper than %d levels", param, maxSchemaDepth)
	}
	if string(raw) == "null" {
		return nil, nil
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		return nil, invalidParam(param, "%s must be an object", param)
	}
	return schema, nil
}

// depth is how deeply a JSON value nests, counted from its brackets (the
// value is valid JSON: brackets inside strings are skipped).
func depth(raw json.RawMessage) int {
	d, deepest, inString, escaped := 0, 0, false, false
	for _, ch := range raw {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch ch {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case ch == '"':
			inString = true
		case ch == '{' || ch == '[':
			d++
			deepest = max(deepest, d)
		case ch == '}' || ch == ']':
			d--
		}
	}
	return deepest
}

func (d *chatDecoder) messages(c *chatRequest) *openAIError {
	const param = "messages"
	tok, e := d.token()
	if e != nil {
		return e
	}
	if tok != json.Delim('[') {
		return invalidParam(param, "messages must be an array of messages")
	}
	for i := 0; d.dec.More(); i++ {
		if i == maxChatMessages {
			return invalidParam(param, "messages holds more than %d messages", maxChatMessages)
		}
		m, e := d.message("messages[" + strconv.Itoa(i) + "]")
		if e != nil {
			return e
		}
		c.Messages = append(c.Messages, m)
	}
	if _, e := d.token(); e != nil { // the array's ']'
		return e
	}
	if len(c.Messages) == 0 {
		return invalidParam(param, "messages must hold at least one message")
	}
	return nil
}

// message maps one message. Instructions (system, developer) are the
// client's own and trusted; user and assistant turns are untrusted, since
// an API client forwards text written by others, so an injection in them
// is caught.
func (d *chatDecoder) message(param string) (gateway.Message, *openAIError) {
	var m gateway.Message
	if ok, e := d.object(param); !ok || e != nil {
		if e == nil {
			e = invalidParam(param, "%s must be an object", param)
		}
		return m, e
	}
	var hasContent bool
	unknown, e := d.fields(param, func(name, p string) (bool, *openAIError) {
		switch name {
		case "role":
			return true, d.role(&m, p)
		case "content":
			text, null, e := d.content(p)
			hasContent = !null
			m.Content = text
			return true, e
		case "name":
			// Accepted and ignored: no connector sends it on.
			_, _, e := d.str(p, "a string")
			return true, e
		case "refusal":
			_, null, e := d.str(p, "a string")
			if e == nil && !null {
				e = invalidParam(p, "%s is not supported; send the refusal as content", p)
			}
			return true, e
		case "tool_calls", "function_call":
			return true, d.refuse(p, refusal{p + " is not supported by Moat's gateway (tools are not)", emptyValues})
		}
		return false, nil
	})
	if e != nil {
		return m, e
	}
	if m.Role == "" {
		return m, invalidParam(param+".role", "%s.role is required", param)
	}
	if e := refuseUnknown(param, unknown); e != nil {
		return m, e
	}
	if !hasContent {
		return m, invalidParam(param+".content", "%s.content is required", param)
	}
	return m, nil
}

func (d *chatDecoder) role(m *gateway.Message, param string) *openAIError {
	role, _, e := d.str(param, "a string")
	if e != nil {
		return e
	}
	switch role {
	case "system", "developer":
		m.Role, m.Trust = gateway.System, gateway.Trusted
	case "user":
		m.Role, m.Trust = gateway.User, gateway.Untrusted
	case "assistant":
		m.Role, m.Trust = gateway.Assistant, gateway.Untrusted
	case "tool", "function":
		return invalidParam(param, "%s messages are not supported by Moat's gateway (tools are not)", role)
	default:
		return invalidParam(param, "%s must be system, developer, user or assistant", param)
	}
	return nil
}

// content reads a string, or an array of text parts joined by new lines
// (the connectors send one string per message); null reports true.
func (d *chatDecoder) content(param string) (string, bool, *openAIError) {
	tok, e := d.token()
	if e != nil {
		return "", false, e
	}
	switch v := tok.(type) {
	case string:
		return v, false, nil
	case nil:
		return "", true, nil
	}
	if tok != json.Delim('[') {
		return "", false, invalidParam(param, "%s must be a string or an array of parts", param)
	}
	var texts []string
	for j := 0; d.dec.More(); j++ {
		if j == maxContentParts {
			return "", false, invalidParam(param, "%s holds more than %d parts", param, maxContentParts)
		}
		text, e := d.part(param + "[" + strconv.Itoa(j) + "]")
		if e != nil {
			return "", false, e
		}
		texts = append(texts, text)
	}
	if _, e := d.token(); e != nil { // the array's ']'
		return "", false, e
	}
	return strings.Join(texts, "\n"), false, nil
}

func (d *chatDecoder) part(param string) (string, *openAIError) {
	if ok, e := d.object(param); !ok || e != nil {
		if e == nil {
			e = invalidParam(param, "%s must be an object", param)
		}
		return "", e
	}
	var typ, text string
	var hasText bool
	unknown, e := d.fields(param, func(name, p string) (bool, *openAIError) {
		var e *openAIError
		var null bool
		switch name {
		case "type":
			typ, _, e = d.str(p, "a string")
			if e == nil && typ != "text" {
				e = invalidParam(p, "%s %q is not supported by Moat's gateway: only text parts are", p, typeName(typ))
			}
		case "text":
			text, null, e = d.str(p, "a string")
			hasText = !null
		default:
			return false, nil
		}
		return true, e
	})
	if e != nil {
		return "", e
	}
	if typ == "" {
		return "", invalidParam(param+".type", "%s.type is required", param)
	}
	if e := refuseUnknown(param, unknown); e != nil {
		return "", e
	}
	if !hasText {
		return "", invalidParam(param+".text", "%s.text must be a string", param)
	}
	return text, nil
}

// jsonProblem describes a JSON error without quoting the input.
func jsonProblem(err error) string {
	var syntax *jsontext.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON"
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return "expected " + typeErr.Type.String() + ", got " + typeErr.Value
	}
	return err.Error()
}

// quoteNames lists field names for an error, bounded: a body is the
// client's own, but an error should not echo a megabyte back.
func quoteNames(names []string) string {
	const most = 5
	q := make([]string, 0, most+1)
	for i, n := range names {
		if i == most {
			q = append(q, fmt.Sprintf("and %d more", len(names)-most))
			break
		}
		q = append(q, strconv.Quote(shortName(n)))
	}
	return strings.Join(q, ", ")
}

func shortName(n string) string {
	const longest = 64
	if len(n) > longest {
		return strings.ToValidUTF8(n[:longest], "") + "…"
	}
	return n
}

var partTypeShape = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// typeName quotes a part type back only when it looks like one, so an
// error never echoes arbitrary text from the body.
func typeName(t string) string {
	if len(t) <= 32 && partTypeShape.MatchString(t) {
		return t
	}
	return "(unrecognised)"
}

// catalogLookup is what mapping a model name needs of the catalog.
type catalogLookup interface {
	HasModel(name string) bool
}

// gatewayRequest maps a decoded chat request and its headers to a gateway
// call. A model name that is not an alias but holds a '/' names a
// connector and its upstream model ("openai/gpt-4o-mini").
func (c chatRequest) gatewayRequest(id gateway.Identity, catalog catalogLookup, h http.Header) (gateway.Request, *openAIError) {
	req := gateway.Request{
		Identity:    id,
		Model:       c.Model,
		Messages:    c.Messages,
		Schema:      c.Schema,
		SchemaName:  c.SchemaName,
		MaxTokens:   c.MaxTokens,
		Temperature: c.Temperature,
		RestoreAll:  true,
		Injection:   gateway.InjectionBlock,
	}
	if connector, model, ok := strings.Cut(c.Model, "/"); ok && !catalog.HasModel(c.Model) {
		req.Connector, req.Model = connector, model
	}
	switch v := strings.ToLower(strings.TrimSpace(h.Get(headerInjection))); v {
	case "", gateway.InjectionBlock:
	case gateway.InjectionFence:
		req.Injection = gateway.InjectionFence
	default:
		return req, invalidParam("", "header %s must be block or fence", headerInjection)
	}
	switch v := strings.ToLower(strings.TrimSpace(h.Get(headerRestore))); v {
	case "", "all":
	case "none":
		req.RestoreAll = false
	default:
		return req, invalidParam("", "header %s must be all or none", headerRestore)
	}
	return req, nil
}

// findingsHeader lists findings by type, sorted: "pii.card=1, pii.email=2".
func findingsHeader(findings map[string]int) string {
	types := make([]string, 0, len(findings))
	for t := range findings {
		types = append(types, t)
	}
	sort.Strings(types)
	var b strings.Builder
	for i, t := range types {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t)
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(findings[t]))
	}
	return b.String()
}

// openAI serves every path under /v1, so that unknown paths and methods
// there also answer in OpenAI's shape.
func (h *handlers) openAI(w http.ResponseWriter, r *http.Request) {
	var allow string
	switch r.URL.Path {
	case "/v1/chat/completions":
		if r.Method == http.MethodPost {
			h.chatCompletions(w, r)
			return
		}
		allow = http.MethodPost
	case "/v1/models":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.listModels(w, r)
			return
		}
		allow = "GET, HEAD"
	default:
		writeOpenAIError(w, &openAIError{Status: http.StatusNotFound, Type: errTypeInvalid, Code: "unknown_url",
			Message: "Moat serves POST /v1/chat/completions and GET /v1/models; there is no " + r.Method + " " + r.URL.Path})
		return
	}
	w.Header().Set("Allow", allow)
	writeOpenAIError(w, &openAIError{Status: http.StatusMethodNotAllowed, Type: errTypeInvalid, Code: "method_not_allowed",
		Message: "method " + r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + allow})
}

var errNoGateway = &openAIError{Status: http.StatusServiceUnavailable, Type: errTypeAPI, Code: gateway.CodeUnavailable, Message: "the AI gateway is not configured"}

func (h *handlers) listModels(w http.ResponseWriter, _ *http.Request) {
	if h.Gateway == nil {
		writeOpenAIError(w, errNoGateway)
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	infos := h.Gateway.Catalog().Models()
	data := make([]model, len(infos))
	for i, m := range infos {
		owner := m.Vendor
		if owner == "" {
			owner = "moat"
		}
		data[i] = model{ID: m.ID, Object: "model", OwnedBy: owner}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (h *handlers) chatCompletions(w http.ResponseWriter, r *http.Request) {
	if h.Gateway == nil {
		w.Header().Set(headerRequestID, gateway.NewRequestID())
		w.Header().Set(headerFindings, "")
		writeOpenAIError(w, errNoGateway)
		return
	}
	req, e := h.readChatRequest(w, r)
	if e != nil {
		w.Header().Set(headerRequestID, gateway.NewRequestID())
		w.Header().Set(headerFindings, "")
		writeOpenAIError(w, e)
		return
	}
	if req.chat.Stream {
		h.chatStream(w, r, req)
		return
	}
	res, err := h.Gateway.Chat(r.Context(), req.gateway)
	setMoatHeaders(w, res.Record)
	if err != nil {
		h.writeGatewayError(w, res.Record, err)
		return
	}
	w.Header().Set(headerOverhead, strconv.FormatInt(res.Overhead.Microseconds(), 10))
	writeCompletion(w, completion(req, res))
}

// parsedChat is a request ready for the gateway.
type parsedChat struct {
	chat    chatRequest
	gateway gateway.Request
}

func (h *handlers) readChatRequest(w http.ResponseWriter, r *http.Request) (parsedChat, *openAIError) {
	buf, err := readBody(w, r)
	// Nothing decoded refers to the body's bytes: strings are copied out.
	defer releasePayload(buf)
	body := *buf
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return parsedChat{}, &openAIError{Status: http.StatusRequestEntityTooLarge, Type: errTypeInvalid, Code: gateway.CodeInvalid,
			Message: "the request body is larger than 1 MiB"}
	}
	if err != nil {
		return parsedChat{}, invalidParam("", "could not read the request body")
	}
	chat, e := decodeChatRequest(body)
	if e != nil {
		return parsedChat{}, e
	}
	p, _ := PrincipalFrom(r.Context())
	id := gateway.Identity{Kind: "key", ID: p.TokenID, Name: p.Name, Role: p.Role}
	greq, e := chat.gatewayRequest(id, h.Gateway.Catalog(), r.Header)
	if e != nil {
		return parsedChat{}, e
	}
	return parsedChat{chat: chat, gateway: greq}, nil
}

// bodyHintBytes is as much of a declared Content-Length as readBody sets
// aside before reading: a client cannot make Moat reserve a megabyte by
// announcing one and sending nothing.
const bodyHintBytes = 64 << 10

// readBody reads the body, at most maxBodyBytes, into a pooled buffer for
// the caller to release (releasePayload). A declared length sizes the
// buffer once, rather than growing it by copies; it is only a hint, and the
// limit is enforced on what is read.
func readBody(w http.ResponseWriter, r *http.Request) (*[]byte, error) {
	pooled := payloadBuffers.Get().(*[]byte)
	buf := bytes.NewBuffer((*pooled)[:0])
	if n := r.ContentLength; n > 0 {
		buf.Grow(int(min(n, bodyHintBytes)) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	*pooled = buf.Bytes()
	return pooled, err
}

func setMoatHeaders(w http.ResponseWriter, rec gateway.Record) {
	id := rec.RequestID
	if id == "" {
		id = gateway.NewRequestID()
	}
	w.Header().Set(headerRequestID, id)
	w.Header().Set(headerFindings, findingsHeader(rec.Findings))
}

func (h *handlers) writeGatewayError(w http.ResponseWriter, rec gateway.Record, err error) {
	e := gatewayError(err)
	h.logChatFailure(rec, err, e)
	writeOpenAIError(w, e)
}

// logChatFailure logs what an operator needs of a failure the client cannot
// fix: ids, stage and code, never the message's payload.
func (h *handlers) logChatFailure(rec gateway.Record, err error, e *openAIError) {
	if e.Status < http.StatusInternalServerError || e.Status == http.StatusBadGateway {
		return
	}
	stage := ""
	var ge *gateway.Error
	if errors.As(err, &ge) {
		stage = ge.Stage
	}
	h.Logger.Error("chat completion failed", "requestId", rec.RequestID, "stage", stage, "code", e.Code)
}

// answerModel is the model that answered, or the one asked for when the
// gateway did not say.
func answerModel(req parsedChat, rec gateway.Record) string {
	if rec.Model != "" {
		return rec.Model
	}
	return req.chat.Model
}

func created(rec gateway.Record) int64 {
	if rec.Time.IsZero() {
		return time.Now().Unix()
	}
	return rec.Time.Unix()
}

type chatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(rec gateway.Record) *chatUsage {
	u := rec.Usage
	return &chatUsage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens}
}

type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *chatUsage   `json:"usage"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatAnswer      `json:"message"`
	FinishReason string          `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

type chatAnswer struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

var jsonNull = json.RawMessage("null")

func completion(req parsedChat, res gateway.Result) chatCompletion {
	return chatCompletion{
		ID:      "chatcmpl-" + res.Record.RequestID,
		Object:  "chat.completion",
		Created: created(res.Record),
		Model:   answerModel(req, res.Record),
		Choices: []chatChoice{{Message: chatAnswer{Role: "assistant", Content: res.Content}, FinishReason: "stop", Logprobs: jsonNull}},
		Usage:   usageOf(res.Record),
	}
}

type chatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
	Usage   *chatUsage    `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int             `json:"index"`
	Delta        chunkDelta      `json:"delta"`
	FinishReason *string         `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

type chunkDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// sse writes a chat stream's events, flushing each so that the client sees
// text as soon as the gateway lets it go.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	chunk   chatChunk
	buf     bytes.Buffer
}

// start sends the headers and the role chunk.
func (s *sse) start() error {
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // proxies in front must not hold events back
	s.w.WriteHeader(http.StatusOK)
	return s.send(chunkDelta{Role: "assistant"}, nil, nil)
}

func (s *sse) send(delta chunkDelta, finish *string, usage *chatUsage) error {
	c := s.chunk
	c.Choices = []chunkChoice{{Delta: delta, FinishReason: finish, Logprobs: jsonNull}}
	if usage != nil {
		c.Choices = []chunkChoice{}
		c.Usage = usage
	}
	return s.event(c)
}

func (s *sse) event(v any) error {
	s.buf.Reset()
	s.buf.WriteString("data: ")
	enc := json.NewEncoder(&s.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	s.buf.WriteByte('\n') // Encode ended the line; a blank one ends the event
	return s.write(s.buf.Bytes())
}

func (s *sse) write(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (h *handlers) chatStream(w http.ResponseWriter, r *http.Request, req parsedChat) {
	s := &sse{w: w, rc: http.NewResponseController(w), chunk: chatChunk{
		Object: "chat.completion.chunk", Created: time.Now().Unix(), Model: req.chat.Model,
	}}
	// The gateway tells the request id and the findings before anything is
	// sent upstream, so they go in the headers even of a stream.
	greq := req.gateway
	greq.Prepared = func(rec gateway.Record) {
		setMoatHeaders(w, rec)
		s.chunk.ID = "chatcmpl-" + rec.RequestID
	}
	res, err := h.Gateway.ChatStream(r.Context(), greq, func(text string) error {
		if !s.started {
			if err := s.start(); err != nil {
				return err
			}
		}
		if text == "" {
			return nil
		}
		return s.send(chunkDelta{Content: &text}, nil, nil)
	})
	if !s.started {
		// Nothing went out yet: answer like a non-stream call would.
		setMoatHeaders(w, res.Record)
		if err != nil {
			h.writeGatewayError(w, res.Record, err)
			return
		}
		// Every chunk names the same model: the answering one when it is
		// known before the first, else the one asked for.
		s.chunk.ID, s.chunk.Model = "chatcmpl-"+res.Record.RequestID, answerModel(req, res.Record)
		if err := s.start(); err != nil {
			return
		}
	}
	if err != nil {
		// The status is sent; the error goes as an event, with no [DONE], so
		// the client knows the answer is incomplete.
		e := gatewayError(err)
		h.logChatFailure(res.Record, err, e)
		_ = s.event(e.body())
		return
	}
	stop := "stop"
	if err := s.send(chunkDelta{}, &stop, nil); err != nil {
		return
	}
	if req.chat.IncludeUsage {
		if err := s.send(chunkDelta{}, nil, usageOf(res.Record)); err != nil {
			return
		}
	}
	_ = s.write([]byte("data: [DONE]\n\n"))
}
