package nodes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/workflow"
)

// AIClassify asks a model which of a fixed set of labels fits a text.
type AIClassify struct{}

func (AIClassify) Name() string             { return "ai.classify" }
func (AIClassify) Kind(map[string]any) Kind { return Effect }
func (AIClassify) Description() string {
	return "Classify text (and data) into one of labels through the gateway, taught by examples; the answer is checked to be one of the labels."
}
func (AIClassify) Schema() map[string]any {
	return aiSettingsSchema([]string{"labels"}, map[string]any{
		"labels": map[string]any{
			"type": "array", "minItems": 2, "maxItems": gateway.MaxLabels, "uniqueItems": true,
			"description": "the answers allowed",
			"items":       map[string]any{"type": "string", "minLength": 1, "maxLength": gateway.MaxLabelBytes},
		},
		"examples": map[string]any{
			"type": "array", "maxItems": gateway.MaxExamples,
			"description": "labelled texts that teach the classification (the local connector trains on them; others read them as examples)",
			"items": object([]string{"text", "label"}, map[string]any{
				"text":  map[string]any{"type": "string", "minLength": 1, "maxLength": gateway.MaxExampleBytes},
				"label": map[string]any{"type": "string", "minLength": 1, "maxLength": gateway.MaxLabelBytes, "description": "one of labels"},
			}),
		},
		"text": aiTemplate("the text to classify (a template); sent as the data item \"text\", with the class and trust of the input field it is"),
	})
}

// Check implements workflow.SettingsChecker.
func (AIClassify) Check(with map[string]any) []workflow.FieldProblem {
	problems := checkAISettings(with)
	if !hasAny(with, "text", "data", "prompt", "messages") {
		problems = append(problems, workflow.FieldProblem{Message: "set text (or data): the model needs something to classify"})
	}
	if data, ok := with["data"].(map[string]any); ok && hasAny(with, "text") {
		if _, dup := data["text"]; dup {
			problems = append(problems, workflow.FieldProblem{Pointer: "/data/text", Message: "text is already the data item named text; rename this one"})
		}
	}
	labels, _ := stringList(with["labels"])
	for i, l := range labels {
		if strings.Contains(l, "{{") {
			problems = append(problems, workflow.FieldProblem{Pointer: fmt.Sprintf("/labels/%d", i), Message: "labels are written as they are; templates are not allowed"})
		}
	}
	if examples, ok := with["examples"].([]any); ok && labels != nil {
		for i, e := range examples {
			m, _ := e.(map[string]any)
			if l, ok := m["label"].(string); ok && !slices.Contains(labels, l) {
				problems = append(problems, workflow.FieldProblem{Pointer: fmt.Sprintf("/examples/%d/label", i),
					Message: fmt.Sprintf("%q is not one of labels (%s)", truncateText(l, 60), strings.Join(labels, ", "))})
			}
		}
	}
	return problems
}

// Execute asks for the label.
func (n AIClassify) Execute(ctx context.Context, c *Call) (Result, error) {
	a, err := newAICall(c, n.Name())
	if err != nil {
		return Result{}, err
	}
	labels, ok := stringList(c.With["labels"])
	if !ok || len(labels) < 2 || len(labels) > gateway.MaxLabels {
		return Result{}, Permanent(fmt.Errorf("labels: want from 2 to %d labels", gateway.MaxLabels))
	}
	a.req.Labels = labels
	if v, ok := c.With["examples"]; ok {
		list, ok := v.([]any)
		if !ok || len(list) > gateway.MaxExamples {
			return Result{}, Permanent(fmt.Errorf("examples: want a list of at most %d examples", gateway.MaxExamples))
		}
		for i, e := range list {
			m, _ := e.(map[string]any)
			text, _ := m["text"].(string)
			label, _ := m["label"].(string)
			if text == "" || !slices.Contains(labels, label) {
				return Result{}, Permanent(fmt.Errorf("examples[%d]: want a text and one of labels", i))
			}
			a.req.Examples = append(a.req.Examples, gateway.Example{Text: text, Label: label})
		}
	}
	if v, ok := c.With["text"]; ok {
		tmpl, _ := a.raw["text"].(string)
		if err := a.addData("text", "text", v, tmpl, "", ""); err != nil {
			return Result{}, err
		}
	}
	if len(a.req.Data) == 0 && len(a.req.Messages) == 0 {
		return Result{}, Permanent(errors.New("nothing to classify: text and data are empty"))
	}
	res, out, err := a.chat(ctx)
	if err != nil {
		return outputOf(out), err
	}
	label, _ := res.Value.(string)
	if label == "" {
		label = strings.TrimSpace(res.Content)
	}
	// The gateway checked the answer; a label outside the set would be a
	// bug there, and must not steer the workflow.
	if !slices.Contains(labels, label) {
		return outputOf(out), Permanent(errors.New("the answer is not one of labels"))
	}
	out["label"] = label
	return Result{Output: out}, nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// CheckInput refuses instructions naming input declared untrusted.
func (AIClassify) CheckInput(with map[string]any, in *workflow.Input) []workflow.FieldProblem {
	return checkInstructions(with, in)
}
