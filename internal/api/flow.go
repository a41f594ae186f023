package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/governance"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// maxReportWorkflows bounds the workflows one vendor report draws; past it
// the report is refused rather than silently partial.
const maxReportWorkflows = 1000

type flowInput struct {
	WorkflowPath
	Format  string `query:"format" maxLength:"16" doc:"json (the default), mermaid or dot"`
	Version int    `query:"version" minimum:"1" doc:"the version to map; the latest when absent"`
}

type flowOutput struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

type vendorReportInput struct {
	Project string `query:"project" maxLength:"63" doc:"only this project's workflows; every project when absent"`
}

type vendorReportOutput struct {
	Body *governance.VendorReport
}

func (h *handlers) registerFlow(api huma.API) {
	mapSchema := api.OpenAPI().Components.Schemas.Schema(reflect.TypeFor[governance.Map](), true, "")
	huma.Register(api, huma.Operation{
		OperationID: "get-workflow-flow", Method: http.MethodGet, Path: "/api/v1/projects/{project}/workflows/{name}/flow",
		Summary: "Map where a workflow version's data flows",
		Description: "The version's inputs with their data classes, each step and what it reads, and where each AI step's calls may go: " +
			"every connector of its model alias's fallback chain in this server's environment, with its vendor and processing location, and what the gateway's policy does " +
			"to each class on the way (allow, redact, mask, hash, tokenize or block). http.request steps show the host they reach. " +
			"format=mermaid or dot answers a diagram as text.",
		Tags: []string{"governance"},
		Responses: map[string]*huma.Response{"200": {
			Description: "The map, as JSON or as a diagram",
			Content: map[string]*huma.MediaType{
				governance.FormatJSON.ContentType():    {Schema: mapSchema},
				governance.FormatMermaid.ContentType(): {Schema: &huma.Schema{Type: huma.TypeString}},
				governance.FormatDot.ContentType():     {Schema: &huma.Schema{Type: huma.TypeString}},
			},
		}},
	}, func(ctx context.Context, in *flowInput) (*flowOutput, error) {
		format, err := governance.ParseFormat(in.Format)
		if err != nil {
			return nil, huma.Error400BadRequest("format must be mermaid, dot or json",
				&huma.ErrorDetail{Location: "query.format", Message: "unknown format; want mermaid, dot or json", Value: in.Format})
		}
		m, err := h.flowMap(ctx, in.Project, in.Name, in.Version)
		var problems workflow.Problems
		if errors.As(err, &problems) {
			return nil, h.apiError(err)
		}
		if err != nil {
			return nil, err
		}
		body, err := governance.Render(m, format)
		if err != nil {
			return nil, h.apiError(err)
		}
		return &flowOutput{ContentType: format.ContentType(), Body: body}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-vendor-flows", Method: http.MethodGet, Path: "/api/v1/flow/vendors",
		Summary: "Which data classes can reach each vendor",
		Description: "Per vendor, the data classes the latest version of each workflow can send it once the gateway's policy has decided, and from which steps; " +
			"also the hosts http.request steps reach, and the AI steps without a route in this server's environment.",
		Tags: []string{"governance"},
	}, func(ctx context.Context, in *vendorReportInput) (*vendorReportOutput, error) {
		if in.Project != "" {
			if _, err := h.Store.GetProject(ctx, in.Project); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return nil, huma.Error404NotFound(fmt.Sprintf("no project named %q", in.Project))
				}
				return nil, h.apiError(err)
			}
		}
		wfs, err := h.Store.ListWorkflows(ctx, in.Project)
		if err != nil {
			return nil, h.apiError(err)
		}
		if len(wfs) > maxReportWorkflows {
			return nil, huma.Error422UnprocessableEntity(fmt.Sprintf("%d workflows are more than one report covers (%d); name a project", len(wfs), maxReportWorkflows),
				&huma.ErrorDetail{Location: "query.project", Message: "name a project to narrow the report", Value: in.Project})
		}
		var maps []*governance.Map
		var broken []governance.Source
		for _, wf := range wfs {
			m, err := h.flowMap(ctx, wf.Project, wf.Name, 0)
			var problems workflow.Problems
			if errors.As(err, &problems) {
				// A stored version that no longer compiles sends nothing,
				// but the report says so rather than leave it out unseen.
				broken = append(broken, governance.Source{Project: wf.Project, Workflow: wf.Name, Version: wf.LatestVersion,
					Reason: "the version no longer compiles: " + problems[0].Message})
				continue
			}
			if err != nil {
				return nil, err
			}
			maps = append(maps, m)
		}
		report := governance.Vendors(in.Project, maps)
		if report.Environment == "" && h.Gateway != nil {
			report.Environment = h.Gateway.Catalog().Environment()
		}
		report.Unresolved = append(report.Unresolved, broken...)
		return &vendorReportOutput{Body: report}, nil
	})
}

// flowMap draws the map of a workflow's version (0 for the latest) against
// this server's gateway.
func (h *handlers) flowMap(ctx context.Context, project, name string, number int) (*governance.Map, error) {
	wf, err := h.Store.GetWorkflow(ctx, project, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, huma.Error404NotFound(fmt.Sprintf("no workflow named %q in project %q", name, project))
	}
	if err != nil {
		return nil, h.apiError(err)
	}
	if number == 0 {
		number = wf.LatestVersion
	}
	v, err := h.Store.GetVersionByNumber(ctx, wf.ID, number)
	if errors.Is(err, store.ErrNotFound) {
		return nil, huma.Error404NotFound(fmt.Sprintf("workflow %s/%s has no version %d; the latest is %d", project, name, number, wf.LatestVersion))
	}
	if err != nil {
		return nil, h.apiError(err)
	}
	var nodes workflow.NodeTypes
	if h.Engine != nil {
		nodes = h.Engine.Registry()
	}
	plan, err := workflow.FromCanonical(v.Definition, nodes)
	if err != nil {
		var problems workflow.Problems
		if errors.As(err, &problems) {
			return nil, problems
		}
		return nil, h.apiError(err)
	}
	opts := governance.Options{Nodes: nodes, Version: v.Number}
	if h.Gateway != nil {
		opts.Catalog, opts.Policy = h.Gateway.Catalog(), h.Gateway.Policy()
	}
	m, err := governance.Build(plan, opts)
	if err != nil {
		return nil, h.apiError(err)
	}
	return m, nil
}
