package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/store"
)

type saveWorkflowInput struct {
	Body struct {
		Source   string `json:"source" minLength:"1" maxLength:"1048576" doc:"the definition, YAML or JSON"`
		Filename string `json:"filename,omitempty" maxLength:"255" doc:"name used in problem locations (file:line:col)"`
	}
}

type versionView struct {
	ID         string          `json:"id"`
	WorkflowID string          `json:"workflowId"`
	Number     int             `json:"number"`
	Hash       string          `json:"hash"`
	CreatedAt  string          `json:"createdAt"`
	Definition json.RawMessage `json:"definition,omitempty"`
	Source     string          `json:"source,omitempty"`
}

func viewVersion(v store.Version, full bool) versionView {
	out := versionView{ID: v.ID, WorkflowID: v.WorkflowID, Number: v.Number, Hash: v.Hash, CreatedAt: v.CreatedAt.UTC().Format(timeFormat)}
	if full {
		out.Definition, out.Source = v.Definition, string(v.Source)
	}
	return out
}

type saveWorkflowOutput struct {
	Status int
	Body   struct {
		Workflow store.Workflow `json:"workflow"`
		Version  versionView    `json:"version"`
		Created  bool           `json:"created" doc:"false when the definition was unchanged and no version was made"`
	}
}

// WorkflowPath addresses a workflow; exported so huma sees it when embedded.
type WorkflowPath struct {
	Project string `path:"project" maxLength:"63"`
	Name    string `path:"name" maxLength:"63"`
}

type workflowOutput struct {
	Body struct {
		Workflow store.Workflow `json:"workflow"`
		Versions []versionView  `json:"versions"`
	}
}

type versionInput struct {
	WorkflowPath
	Number int `path:"number" minimum:"1"`
}

type versionOutput struct {
	Body versionView
}

type listWorkflowsInput struct {
	Project string `path:"project" maxLength:"63"`
}

type listWorkflowsOutput struct {
	Body struct {
		Workflows []store.Workflow `json:"workflows"`
	}
}

func (h *handlers) registerWorkflows(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "save-workflow", Method: http.MethodPost, Path: "/api/v1/workflows",
		Summary:     "Save a workflow definition",
		Description: "Validates the definition and stores it as a new immutable version. An unchanged definition makes no new version (200, created=false); a new one answers 201. Problems are listed with file:line:col.",
		Tags:        []string{"workflows"}, MaxBodyBytes: maxSourceBytes + 4096, DefaultStatus: http.StatusCreated,
	}, func(ctx context.Context, in *saveWorkflowInput) (*saveWorkflowOutput, error) {
		filename := in.Body.Filename
		if filename == "" {
			filename = "workflow"
		}
		saved, err := h.Engine.SaveWorkflow(ctx, filename, []byte(in.Body.Source))
		if err != nil {
			return nil, h.apiError(err)
		}
		out := &saveWorkflowOutput{Status: http.StatusCreated}
		if !saved.Created {
			out.Status = http.StatusOK
		}
		out.Body.Workflow, out.Body.Version, out.Body.Created = saved.Workflow, viewVersion(saved.Version, false), saved.Created
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "list-workflows", Method: http.MethodGet, Path: "/api/v1/projects/{project}/workflows",
		Summary: "List a project's workflows", Tags: []string{"workflows"},
	}, func(ctx context.Context, in *listWorkflowsInput) (*listWorkflowsOutput, error) {
		if _, err := h.Store.GetProject(ctx, in.Project); err != nil {
			return nil, h.apiError(err)
		}
		wfs, err := h.Store.ListWorkflows(ctx, in.Project)
		if err != nil {
			return nil, h.apiError(err)
		}
		out := &listWorkflowsOutput{}
		out.Body.Workflows = append([]store.Workflow{}, wfs...)
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-workflow", Method: http.MethodGet, Path: "/api/v1/projects/{project}/workflows/{name}",
		Summary: "Get a workflow and its versions", Tags: []string{"workflows"},
	}, func(ctx context.Context, in *WorkflowPath) (*workflowOutput, error) {
		wf, err := h.Store.GetWorkflow(ctx, in.Project, in.Name)
		if err != nil {
			return nil, h.apiError(err)
		}
		versions, err := h.Store.ListVersions(ctx, wf.ID)
		if err != nil {
			return nil, h.apiError(err)
		}
		out := &workflowOutput{}
		out.Body.Workflow = wf
		out.Body.Versions = make([]versionView, len(versions))
		for i, v := range versions {
			out.Body.Versions[i] = viewVersion(v, false)
		}
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-workflow-version", Method: http.MethodGet, Path: "/api/v1/projects/{project}/workflows/{name}/versions/{number}",
		Summary: "Get one version with its definition and source", Tags: []string{"workflows"},
	}, func(ctx context.Context, in *versionInput) (*versionOutput, error) {
		wf, err := h.Store.GetWorkflow(ctx, in.Project, in.Name)
		if err != nil {
			return nil, h.apiError(err)
		}
		v, err := h.Store.GetVersionByNumber(ctx, wf.ID, in.Number)
		if err != nil {
			return nil, h.apiError(err)
		}
		return &versionOutput{Body: viewVersion(v, true)}, nil
	})
}
