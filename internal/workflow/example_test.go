package workflow_test

import (
	"fmt"

	"github.com/moatproject/moat/internal/workflow"
)

// transform is a node type whose settings are any value.
type transform struct{}

func (transform) Name() string { return "transform" }
func (transform) Schema() map[string]any {
	return map[string]any{"type": "object"}
}

type nodeTypes map[string]workflow.NodeType

func (n nodeTypes) Lookup(name string) (workflow.NodeType, bool) { t, ok := n[name]; return t, ok }
func (n nodeTypes) Names() []string                              { return []string{"transform"} }

var nodes = nodeTypes{"transform": transform{}}

func ExampleLoad() {
	src := []byte(`apiVersion: moat/v1
kind: Workflow
name: greet
input:
  schema:
    type: object
    required: [name]
    properties: {name: {type: string}}
steps:
  - id: hello
    uses: transform
    with:
      greeting: "Hello, {{ input.name }}!"
      length: "{{ size(input.name) }}"
output: "{{ steps.hello.output.greeting }}"
`)
	plan, err := workflow.Load("greet.yaml", src, nodes)
	if err != nil {
		fmt.Println(err)
		return
	}
	input, _ := workflow.DecodeJSON([]byte(`{"name": "Ada"}`))
	if problems := plan.ValidateInput(input); problems != nil {
		fmt.Println(problems)
		return
	}
	vars := workflow.Vars{"input": input}
	with, err := plan.RenderWith(plan.Step("hello"), vars)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%q %T(%v)\n", with["greeting"], with["length"], with["length"])

	vars["steps"] = map[string]any{"hello": map[string]any{"output": with, "status": "succeeded"}}
	out, _ := plan.Render(plan.Definition.Output, vars)
	fmt.Println(out)
	// Output:
	// "Hello, Ada!" int64(3)
	// Hello, Ada!
}

func ExampleLoad_problems() {
	src := []byte(`apiVersion: moat/v1
kind: Workflow
name: greet
steps:
  - id: hello-world
    uses: transfrom
  - id: reply
    uses: transform
    with: {text: "{{ steps.later.output }}", key: AKIAIOSFODNN7EXAMPLE}
`)
	_, err := workflow.Load("greet.yaml", src, nodes)
	fmt.Println(err)
	// Output:
	// greet.yaml:5:5: step id "hello-world" must start with a letter or '_' and hold only letters, digits and '_' (at most 64); '-' is not allowed because steps.a-b would read as a subtraction
	// greet.yaml:6:5: unknown node type "transfrom" (did you mean transform?); known types: transform
	// greet.yaml:9:12: expression refers to steps.later, but there is no step "later"
	// greet.yaml:9:46: looks like a credential (AWS access key id); store it with `moat secret set` and reference it by name, never in a definition: `credential: {secret: NAME}` on an http.request step, or a connector's credential
}
