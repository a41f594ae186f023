package workflow

// NodeType is what validation needs to know of a registered step kind. The
// nodes package implements it; workflow never imports nodes.
type NodeType interface {
	// Name is the value of a step's `uses`.
	Name() string
	// Schema is the JSON Schema (draft 2020-12) of the step's `with`. A
	// field that may hold a {{ }} template accepts a string as well.
	Schema() map[string]any
}

// Connectors is implemented by a NodeTypes that also knows the configured
// connectors a step may name.
type Connectors interface {
	HasConnector(name string) bool
}

// NodeTypes looks node types up by name.
type NodeTypes interface {
	Lookup(name string) (NodeType, bool)
	Names() []string
}

// Brancher is a node type whose outgoing edges come from its settings (a
// switch's case targets). At run time it chooses which of them are taken.
type Brancher interface {
	Targets(with map[string]any) []string
}

// ExprField is a setting that holds a raw CEL expression (no braces), such
// as a switch case's `when`. Pointer is a JSON pointer within `with`.
type ExprField struct {
	Pointer string
	Source  string
	// Bool requires the expression to be boolean when its type is known.
	Bool bool
	// Vars are extra variables in scope for this expression (e.g. item, index).
	Vars []string
}

// ExpressionFielder is a node type with raw CEL settings. Strings at these
// pointers are not templates.
type ExpressionFielder interface {
	Expressions(with map[string]any) []ExprField
}

// Nested is a step embedded in another step's settings (foreach's `step`).
type Nested struct {
	// Pointer is the JSON pointer, within `with`, of the nested step
	// ("/step") or of its settings ("/step/with"); both are understood.
	Pointer string
	Uses    string
	With    map[string]any
	Vars    []string // extra variables in scope inside it (item, index)
}

// Container is a node type that embeds another step.
type Container interface {
	Nested(with map[string]any) (Nested, bool)
}

// FieldProblem is a node-specific problem in a step's settings.
type FieldProblem struct {
	Pointer string // JSON pointer within `with`
	Message string
}

// SettingsChecker adds checks a JSON Schema cannot express, such as a
// literal credential in an HTTP header.
type SettingsChecker interface {
	Check(with map[string]any) []FieldProblem
}

// InputChecker adds checks that need the workflow's input schema, such as
// input declared untrusted named in an AI step's instructions.
type InputChecker interface {
	CheckInput(with map[string]any, input *Input) []FieldProblem
}

// Waiter is a node type whose steps wait (approval, wait). How long they
// wait is a setting of theirs; a step-level timeout would mean nothing.
type Waiter interface {
	Waits() bool
}
