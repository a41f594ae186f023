package governance_test

import (
	"fmt"
	"os"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/governance"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/workflow"
)

// A workflow hands a customer's message and e-mail address to a model
// alias that falls back from a hosted service to an on-premises server.
// The map shows what reaches each of them once the server's policy has
// decided: the address as a token, the message as it is.
func ExampleBuild() {
	retention := 0
	res := gateway.Resources{
		Vendors: []gateway.Vendor{
			{Name: "hosted-ai", Location: gateway.ManagedService, Region: "eu", RetentionDays: &retention},
			{Name: "own-gpu", Location: gateway.OnPremises, RetentionDays: &retention},
		},
		Connectors: []gateway.Connector{
			{Name: "hosted", Type: gateway.TypeOpenAI, Vendor: "hosted-ai", BaseURL: "https://llm.example/v1", Models: []string{"large"}},
			{Name: "gpu", Type: gateway.TypeOpenAI, Vendor: "own-gpu", BaseURL: "http://gpu.internal/v1", Models: []string{"small"}},
		},
		Models: []gateway.Model{{Name: "support", Chain: []gateway.ModelTarget{{Connector: "hosted"}, {Connector: "gpu"}}}},
	}
	catalog, err := gateway.BuildCatalog(res, gateway.CatalogOptions{Environment: "prod", Getenv: func(string) string { return "" }})
	if err != nil {
		fmt.Println(err)
		return
	}
	plan, err := workflow.Load("answer.yaml", []byte(`apiVersion: moat/v1
kind: Workflow
name: answer
project: support
input:
  schema:
    type: object
    properties:
      email: {type: string, x-data-class: pii.email}
      message: {type: string, x-data-class: customer.content, x-trust: untrusted}
steps:
  - id: draft
    uses: ai.chat
    with:
      model: support
      prompt: Draft a reply.
      data: {email: "{{ input.email }}", message: "{{ input.message }}"}
`), nodes.Builtins())
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := governance.Build(plan, governance.Options{Catalog: catalog, Policy: gateway.DefaultPolicy(), Version: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range m.Steps[0].AI.Targets {
		for _, c := range t.Classes {
			fmt.Printf("%s (%s, %s): %s %s\n", t.Connector, t.Vendor.Name, t.Vendor.Location, c.Class, c.Action)
		}
	}
	out, _ := governance.Render(m, governance.FormatMermaid)
	os.Stdout.Write(out)
	// Output:
	// hosted (hosted-ai, managed-service): customer.content allow
	// hosted (hosted-ai, managed-service): pii.email tokenize
	// gpu (own-gpu, on-premises): customer.content allow
	// gpu (own-gpu, on-premises): pii.email tokenize
	// flowchart LR
	//   n0(["input.email<br/>pii.email"])
	//   n1(["input.message<br/>customer.content, untrusted"])
	//   n2["draft<br/>ai.chat"]
	//   n3[("hosted (openai)<br/>vendor hosted-ai<br/>managed-service, eu")]
	//   n4[("gpu (openai)<br/>vendor own-gpu<br/>on-premises")]
	//   n0 -->|"pii.email"| n2
	//   n1 -->|"customer.content"| n2
	//   n2 -->|"customer.content: allow<br/>pii.email: tokenize"| n3
	//   n2 -.->|"fallback 1<br/>customer.content: allow<br/>pii.email: tokenize"| n4
}
