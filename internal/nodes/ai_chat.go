package nodes

import (
	"context"

	"github.com/moatproject/moat/internal/workflow"
)

// AIChat asks a model for a text answer through the gateway.
type AIChat struct{}

func (AIChat) Name() string             { return "ai.chat" }
func (AIChat) Kind(map[string]any) Kind { return Effect }
func (AIChat) Description() string {
	return "Ask a model through the gateway: instructions in system and prompt (or messages), the values it works on under data; personal data leaves as tokens and comes back restored."
}
func (AIChat) Schema() map[string]any { return aiSettingsSchema(nil, nil) }

// Check implements workflow.SettingsChecker.
func (AIChat) Check(with map[string]any) []workflow.FieldProblem {
	problems := checkAISettings(with)
	if !hasAny(with, "prompt", "messages", "data") {
		problems = append(problems, workflow.FieldProblem{Message: "set prompt, messages or data: the model needs something to answer"})
	}
	return problems
}

// Execute sends the conversation and returns the answer.
func (n AIChat) Execute(ctx context.Context, c *Call) (Result, error) {
	a, err := newAICall(c, n.Name())
	if err != nil {
		return Result{}, err
	}
	_, out, err := a.chat(ctx)
	return outputOf(out), err
}

// CheckInput refuses instructions naming input declared untrusted.
func (AIChat) CheckInput(with map[string]any, in *workflow.Input) []workflow.FieldProblem {
	return checkInstructions(with, in)
}
