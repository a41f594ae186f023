package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/workflow"
)

// AI is the gateway as nodes see it: the only way a step reaches an AI service.
type AI interface {
	Chat(ctx context.Context, req gateway.Request) (gateway.Result, error)
}

// ErrNoAI fails an AI step on a server that has no gateway.
var ErrNoAI = errors.New("no AI gateway is configured")

// ErrNoModel fails an AI step that names neither a connector nor a model:
// a Check sees only `with`, so the step-level connector is known only here.
var ErrNoModel = errors.New("set connector: on the step or with.model")

// ErrUntrustedInstruction refuses an instruction that would carry text the
// input schema declares untrusted.
var ErrUntrustedInstruction = errors.New("untrusted input in instructions")

// Bounds on the AI nodes' settings; the gateway bounds what a call sends.
const (
	maxAIMessages      = 64
	maxAITemplateBytes = 64 << 10
	maxAIMaxTokens     = 100_000
)

// Names a data item or a class may take; the gateway labels items by name.
const (
	dataNamePattern  = `^[a-z][a-z0-9_]{0,63}$`
	dataClassPattern = `^[a-z][a-z0-9_.-]{0,127}$`
)

// Roles of messages, as the gateway names them (nodes never import the
// connectors: only the gateway reaches them).
const (
	roleSystem    = "system"
	roleUser      = "user"
	roleAssistant = "assistant"
)

// Values of restore that are not a list of classes.
const (
	restoreAll  = "all"
	restoreNone = "none"
)

func aiTemplate(description string) map[string]any {
	return map[string]any{"type": "string", "maxLength": maxAITemplateBytes, "description": description}
}

// aiSettingsSchema is what every AI node accepts, plus its own fields.
func aiSettingsSchema(required []string, own map[string]any) map[string]any {
	props := map[string]any{
		"model": map[string]any{"type": "string", "minLength": 1, "maxLength": 128,
			"description": "a model alias; or, when the step names a connector, that connector's model (its default when absent)"},
		"system": aiTemplate("trusted instructions (a template); it must not refer to input declared x-trust: untrusted"),
		"prompt": aiTemplate("the user message (a template); exclusive with messages; it must not refer to input declared x-trust: untrusted"),
		"messages": map[string]any{
			"type": "array", "minItems": 1, "maxItems": maxAIMessages,
			"description": "the conversation; exclusive with prompt",
			"items": object([]string{"role", "content"}, map[string]any{
				"role":    map[string]any{"type": "string", "enum": []any{roleSystem, roleUser, roleAssistant}},
				"content": aiTemplate("the message (a template); it must not refer to input declared x-trust: untrusted"),
			}),
		},
		"data": map[string]any{
			"type": "object", "maxProperties": gateway.MaxDataItems,
			"description":   "data the model reads, fenced and labelled as data, never as instructions: name → template, or {value, class, trust}; a value that is exactly {{ input.x }} takes x-data-class and x-trust from the input schema",
			"propertyNames": map[string]any{"pattern": dataNamePattern},
			"additionalProperties": map[string]any{"anyOf": []any{
				aiTemplate("the value (a template)"),
				object([]string{"value"}, map[string]any{
					"value": map[string]any{"description": "the value; templates allowed"},
					"class": map[string]any{"type": "string", "pattern": dataClassPattern, "description": "its data class (such as pii.email); wins over the input schema's"},
					"trust": map[string]any{"type": "string", "enum": []any{"trusted", "untrusted"}, "description": "untrusted unless said otherwise"},
				}),
			}},
		},
		"maxTokens":   map[string]any{"type": "integer", "minimum": 1, "maximum": maxAIMaxTokens, "description": "the longest answer, in tokens"},
		"temperature": map[string]any{"type": "number", "minimum": 0, "maximum": 2},
		"restore": map[string]any{
			"description": "which tokens are turned back into their values in the answer: all (that the policy allows), none, or a list of data classes",
			"default":     restoreAll,
			"anyOf": []any{
				map[string]any{"type": "string", "enum": []any{restoreAll, restoreNone}},
				map[string]any{"type": "array", "maxItems": gateway.MaxRestoreClasses, "uniqueItems": true, "items": map[string]any{"type": "string", "pattern": dataClassPattern}},
			},
		},
		"injection": map[string]any{"type": "string", "enum": []any{gateway.InjectionBlock, gateway.InjectionFence}, "default": gateway.InjectionBlock,
			"description": "when untrusted data reads as a prompt injection: block the call, or fence it and send it flagged"},
	}
	maps.Copy(props, own)
	return object(required, props)
}

// checkAISettings are the save-time checks every AI node shares.
func checkAISettings(with map[string]any) []workflow.FieldProblem {
	var problems []workflow.FieldProblem
	_, hasPrompt := with["prompt"]
	_, hasMessages := with["messages"]
	if hasPrompt && hasMessages {
		problems = append(problems, workflow.FieldProblem{Pointer: "/messages", Message: "set prompt or messages, not both"})
	}
	return problems
}

// hasAny reports whether with sets one of the keys.
func hasAny(with map[string]any, keys ...string) bool {
	for _, k := range keys {
		if _, ok := with[k]; ok {
			return true
		}
	}
	return false
}

// rawSettings returns the node's settings as written, templates unrendered:
// what they refer to decides trust and class. An AI step may be the step
// itself or nested in foreach steps.
func rawSettings(c *Call, name string) (map[string]any, bool) {
	if c.Step == nil || c.Step.Step == nil {
		return nil, false
	}
	uses, with := c.Step.Uses, c.Step.With
	for range maxNestedLookups {
		if uses == name {
			return with, true
		}
		if uses != (Foreach{}).Name() {
			return nil, false
		}
		uses, with = nestedStep(with)
	}
	return nil, false
}

// maxNestedLookups bounds the foreach levels rawSettings descends.
const maxNestedLookups = 8

// aiCall is one AI step's execution: the request from the common settings,
// completed by each node with its own fields.
type aiCall struct {
	c     *Call
	ai    AI
	raw   map[string]any
	trust *inputTrust
	req   gateway.Request
}

// newAICall builds the request from the settings every AI node shares.
func newAICall(c *Call, name string) (*aiCall, error) {
	if c.Env == nil || c.Env.AI == nil {
		return nil, Permanent(ErrNoAI)
	}
	if c.RunID == "" || c.Plan == nil || c.Plan.Definition == nil {
		return nil, Permanent(errors.New("an AI step runs only inside a run"))
	}
	raw, ok := rawSettings(c, name)
	if !ok {
		return nil, Permanent(fmt.Errorf("the settings of %s are not where the step says", name))
	}
	a := &aiCall{c: c, ai: c.Env.AI, raw: raw, trust: newInputTrust(c.Plan.Definition.Input)}
	model, _ := c.With["model"].(string)
	if model == "" && c.Step.Connector == "" {
		return nil, Permanent(ErrNoModel)
	}
	a.req = gateway.Request{
		Identity: gateway.Identity{Kind: "run", ID: c.RunID, Run: c.RunID,
			Project: c.Plan.Definition.Project, Workflow: c.Plan.Definition.Name, Step: c.Step.ID},
		Model:     model,
		Connector: c.Step.Connector,
		Injection: gateway.InjectionBlock,
	}
	if err := a.messages(); err != nil {
		return nil, err
	}
	if err := a.data(); err != nil {
		return nil, err
	}
	if err := a.options(); err != nil {
		return nil, err
	}
	return a, nil
}

// messages turns system, prompt and messages into instructions, refusing
// any that would carry untrusted input.
func (a *aiCall) messages() error {
	if hasAny(a.c.With, "prompt") && hasAny(a.c.With, "messages") {
		return Permanent(errors.New("set prompt or messages, not both"))
	}
	add := func(field string, role string, rendered any, raw any) error {
		var msg gateway.Message
		switch role {
		case roleSystem:
			msg.Role = roleSystem
		case roleUser:
			msg.Role = roleUser
		case roleAssistant:
			msg.Role = roleAssistant
		default:
			return Permanent(fmt.Errorf("%s: the role must be system, user or assistant", field))
		}
		tmpl, _ := raw.(string)
		trust, err := a.trust.instruction(field, tmpl)
		if err != nil {
			return err
		}
		if msg.Content, err = textOf(rendered); err != nil {
			return Permanent(fmt.Errorf("%s: %w", field, err))
		}
		msg.Trust = trust
		a.req.Messages = append(a.req.Messages, msg)
		return nil
	}
	if v, ok := a.c.With["system"]; ok {
		if err := add("system", roleSystem, v, a.raw["system"]); err != nil {
			return err
		}
	}
	if v, ok := a.c.With["prompt"]; ok {
		if err := add("prompt", roleUser, v, a.raw["prompt"]); err != nil {
			return err
		}
	}
	if v, ok := a.c.With["messages"]; ok {
		list, ok := v.([]any)
		if !ok || len(list) > maxAIMessages {
			return Permanent(fmt.Errorf("messages: want a list of at most %d messages", maxAIMessages))
		}
		rawList, _ := a.raw["messages"].([]any)
		for i, e := range list {
			m, _ := e.(map[string]any)
			role, _ := m["role"].(string)
			var rawContent any
			if i < len(rawList) {
				rm, _ := rawList[i].(map[string]any)
				rawContent = rm["content"]
			}
			if err := add(fmt.Sprintf("messages[%d]", i), role, m["content"], rawContent); err != nil {
				return err
			}
		}
	}
	return nil
}

// data turns the data settings into data items, each with its class and
// trust: as the step says, else as the input schema declares the field it
// is exactly, else untrusted and unclassified.
func (a *aiCall) data() error {
	v, ok := a.c.With["data"]
	if !ok {
		return nil
	}
	items, ok := v.(map[string]any)
	if !ok || len(items) > gateway.MaxDataItems {
		return Permanent(fmt.Errorf("data: want an object of at most %d items", gateway.MaxDataItems))
	}
	rawItems, _ := a.raw["data"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(items)) {
		var value any
		var class, trust, tmpl string
		if rm, isObject := rawItems[name].(map[string]any); isObject {
			m, _ := items[name].(map[string]any)
			value = m["value"]
			class, _ = m["class"].(string)
			trust, _ = m["trust"].(string)
			tmpl, _ = rm["value"].(string)
		} else {
			value = items[name]
			tmpl, _ = rawItems[name].(string)
		}
		if err := a.addData("data."+name, name, value, tmpl, class, trust); err != nil {
			return err
		}
	}
	return nil
}

// addData adds one data item; an empty value (an absent optional field)
// sends nothing.
func (a *aiCall) addData(field, name string, value any, tmpl, class, trust string) error {
	if !dataNameRE.MatchString(name) {
		return Permanent(fmt.Errorf("%s: the name must match %s", field, dataNamePattern))
	}
	for _, d := range a.req.Data {
		if d.Name == name {
			return Permanent(fmt.Errorf("%s: a data item of that name is already set", field))
		}
	}
	text, err := textOf(value)
	if err != nil {
		return Permanent(fmt.Errorf("%s: %w", field, err))
	}
	if text == "" {
		return nil
	}
	if class == "" || trust == "" {
		declClass, declTrust, err := a.trust.declared(field, tmpl)
		if err != nil {
			return err
		}
		if class == "" {
			class = declClass
		}
		if trust == "" {
			trust = declTrust
		}
	}
	if trust == "" {
		trust = gateway.Untrusted // data is data
	}
	a.req.Data = append(a.req.Data, gateway.DataItem{Name: name, Value: text, Class: class, Trust: trust})
	return nil
}

// options reads maxTokens, temperature, restore and injection.
func (a *aiCall) options() error {
	w := a.c.With
	if v, ok := w["maxTokens"]; ok {
		n, ok := wholeNumber(v)
		if !ok || n < 1 || n > maxAIMaxTokens {
			return Permanent(fmt.Errorf("maxTokens: want a whole number from 1 to %d", maxAIMaxTokens))
		}
		a.req.MaxTokens = int(n)
	}
	if v, ok := w["temperature"]; ok {
		t, ok := number(v)
		if !ok || t < 0 || t > 2 {
			return Permanent(errors.New("temperature: want a number from 0 to 2"))
		}
		a.req.Temperature = &t
	}
	switch r := w["restore"].(type) {
	case nil:
		a.req.RestoreAll = true
	case string:
		switch r {
		case restoreAll:
			a.req.RestoreAll = true
		case restoreNone:
		default:
			return Permanent(errors.New("restore: want all, none or a list of data classes"))
		}
	case []any:
		if len(r) > gateway.MaxRestoreClasses {
			return Permanent(fmt.Errorf("restore: at most %d classes", gateway.MaxRestoreClasses))
		}
		for i, e := range r {
			s, ok := e.(string)
			if !ok || s == "" {
				return Permanent(fmt.Errorf("restore[%d]: want a data class name", i))
			}
			a.req.Restore = append(a.req.Restore, s)
		}
	default:
		return Permanent(errors.New("restore: want all, none or a list of data classes"))
	}
	if v, ok := w["injection"]; ok {
		s, _ := v.(string)
		if s != gateway.InjectionBlock && s != gateway.InjectionFence {
			return Permanent(errors.New("injection: want block or fence"))
		}
		a.req.Injection = s
	}
	return nil
}

// chat sends the request; its output shows what left and what came back.
// A refusal the same call cannot overcome is permanent; the rest are
// retried under the step's retry policy.
func (a *aiCall) chat(ctx context.Context) (gateway.Result, map[string]any, error) {
	res, err := a.ai.Chat(ctx, a.req)
	var out map[string]any
	if err == nil || res.Record.RequestID != "" {
		out = aiOutput(res)
	}
	if err != nil {
		var gerr *gateway.Error
		if errors.As(err, &gerr) && !gerr.Retryable() {
			err = Permanent(err)
		}
		if out != nil {
			// Nothing checked came back: an answer that failed its checks
			// may hold what must not be kept (a leaked value, a canary).
			delete(out, "content")
			delete(out, "received")
		}
		return res, out, err
	}
	return res, out, nil
}

// outputOf is a step's result with the output, when there is one.
func outputOf(out map[string]any) Result {
	if out == nil {
		return Result{}
	}
	return Result{Output: out}
}

func aiOutput(res gateway.Result) map[string]any {
	rec := res.Record
	sent := make([]any, len(res.Sent))
	for i, m := range res.Sent {
		sent[i] = map[string]any{"role": string(m.Role), "content": m.Content}
	}
	return map[string]any{
		"content":    res.Content,
		"model":      rec.Model,
		"connector":  rec.Connector,
		"vendor":     rec.Vendor,
		"requestId":  rec.RequestID,
		"usage":      map[string]any{"promptTokens": int64(rec.Usage.PromptTokens), "completionTokens": int64(rec.Usage.CompletionTokens)},
		"costMicros": rec.CostMicros,
		"sent":       sent,
		"received":   res.Received,
		"findings":   counts(rec.Findings),
		"decisions":  counts(rec.Decisions),
	}
}

func counts(m map[string]int) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = int64(v)
	}
	return out
}

// textOf is a rendered value as text: a string as it is, nothing for null,
// anything else as compact JSON (as templates format values).
func textOf(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("the value cannot be written as JSON: %w", err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// plainJSON turns a value decoded elsewhere into the plain values steps
// hold (int64, []any, map[string]any).
func plainJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return workflow.DecodeJSON(b)
}

func wholeNumber(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	}
	return 0, false
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	}
	return 0, false
}

// stringList reads a list of strings, as labels are written.
func stringList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}
