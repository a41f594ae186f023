package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/workflow"
)

// AIExtract asks a model for a JSON value that matches a schema; the
// gateway checks the answer and asks once more when it does not match.
type AIExtract struct{}

func (AIExtract) Name() string             { return "ai.extract" }
func (AIExtract) Kind(map[string]any) Kind { return Effect }
func (AIExtract) Description() string {
	return "Extract a JSON value matching schema from the data through the gateway; an answer that does not match is repaired once, then the step fails."
}
func (AIExtract) Schema() map[string]any {
	return aiSettingsSchema([]string{"schema"}, map[string]any{
		"schema": map[string]any{"type": "object", "description": "the JSON Schema (draft 2020-12) the answer must match, at most 64 KiB; the local connector extracts entities when it has an \"entities\" property"},
	})
}

// Check implements workflow.SettingsChecker.
func (AIExtract) Check(with map[string]any) []workflow.FieldProblem {
	problems := checkAISettings(with)
	if doc, ok := with["schema"].(map[string]any); ok {
		if err := checkAnswerSchema(doc); err != nil {
			problems = append(problems, workflow.FieldProblem{Pointer: "/schema", Message: err.Error()})
		}
	}
	return problems
}

// checkAnswerSchema bounds and compiles the schema an answer must match.
func checkAnswerSchema(doc map[string]any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("the schema cannot be written as JSON: %w", err)
	}
	if len(b) > gateway.MaxSchemaBytes {
		return fmt.Errorf("the schema is %d bytes as JSON, more than %d", len(b), gateway.MaxSchemaBytes)
	}
	if _, err := workflow.CompileSchema(doc); err != nil {
		return fmt.Errorf("the schema is not valid: %w", err)
	}
	return nil
}

// Execute asks for the value and returns it checked.
func (n AIExtract) Execute(ctx context.Context, c *Call) (Result, error) {
	a, err := newAICall(c, n.Name())
	if err != nil {
		return Result{}, err
	}
	doc, ok := c.With["schema"].(map[string]any)
	if !ok {
		return Result{}, Permanent(errors.New("schema: want a JSON Schema object"))
	}
	if err := checkAnswerSchema(doc); err != nil {
		return Result{}, Permanent(fmt.Errorf("schema: %w", err))
	}
	a.req.Schema, a.req.SchemaName, a.req.Repair = doc, c.Step.ID, true
	res, out, err := a.chat(ctx)
	if err != nil {
		return outputOf(out), err
	}
	value, err := plainJSON(res.Value)
	if err != nil {
		return outputOf(out), Permanent(fmt.Errorf("the checked value cannot be kept: %w", err))
	}
	out["value"] = value
	return Result{Output: out}, nil
}

// CheckInput refuses instructions naming input declared untrusted.
func (AIExtract) CheckInput(with map[string]any, in *workflow.Input) []workflow.FieldProblem {
	return checkInstructions(with, in)
}
