package api

import (
	"context"
	"net/http"
	"regexp"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/store"
)

var projectName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ProjectPath addresses a project; exported so huma sees it when embedded.
type ProjectPath struct {
	Name string `path:"project" maxLength:"63" doc:"project name"`
}

type projectOutput struct {
	Body store.Project
}

type putProjectInput struct {
	ProjectPath
	Body struct {
		Description string `json:"description,omitempty" maxLength:"1000"`
	}
}

type listProjectsOutput struct {
	Body struct {
		Projects []store.Project `json:"projects"`
	}
}

func (h *handlers) registerProjects(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "list-projects", Method: http.MethodGet, Path: "/api/v1/projects",
		Summary: "List projects", Tags: []string{"projects"},
	}, func(ctx context.Context, _ *struct{}) (*listProjectsOutput, error) {
		ps, err := h.Store.ListProjects(ctx)
		if err != nil {
			return nil, h.apiError(err)
		}
		out := &listProjectsOutput{}
		out.Body.Projects = ps
		if out.Body.Projects == nil {
			out.Body.Projects = []store.Project{}
		}
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-project", Method: http.MethodGet, Path: "/api/v1/projects/{project}",
		Summary: "Get a project", Tags: []string{"projects"},
	}, func(ctx context.Context, in *ProjectPath) (*projectOutput, error) {
		p, err := h.Store.GetProject(ctx, in.Name)
		if err != nil {
			return nil, h.apiError(err)
		}
		return &projectOutput{Body: p}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "put-project", Method: http.MethodPut, Path: "/api/v1/projects/{project}",
		Summary: "Create or update a project", Tags: []string{"projects"}, MaxBodyBytes: maxBodyBytes,
	}, func(ctx context.Context, in *putProjectInput) (*projectOutput, error) {
		if !projectName.MatchString(in.Name) {
			return nil, huma.Error422UnprocessableEntity("project name must be lower-case letters, digits and dashes (at most 63)",
				&huma.ErrorDetail{Location: "path.project", Message: "invalid project name", Value: in.Name})
		}
		var p store.Project
		err := h.Store.InTx(ctx, func(tx store.Tx) error {
			now := time.Now().UTC()
			var err error
			p, err = tx.UpsertProject(ctx, store.Project{ID: store.NewID("prj"), Name: in.Name, Description: in.Body.Description, CreatedAt: now, UpdatedAt: now})
			return err
		})
		if err != nil {
			return nil, h.apiError(err)
		}
		return &projectOutput{Body: p}, nil
	})
}
