package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/store"
)

// TaskView is a human task with the details shown to the reviewer.
type TaskView struct {
	store.Task
	Details json.RawMessage `json:"details,omitempty"`
}

type listTasksInput struct {
	Project string `query:"project" maxLength:"63"`
	Run     string `query:"run" maxLength:"64"`
	Status  string `query:"status" enum:"pending,approved,rejected,expired,cancelled,all," default:"pending"`
	Limit   int    `query:"limit" minimum:"0" maximum:"500" default:"100"`
}

type listTasksOutput struct {
	Body struct {
		Tasks []TaskView `json:"tasks"`
	}
}

type taskPath struct {
	ID string `path:"id" maxLength:"64"`
}

type taskOutput struct {
	Body TaskView
}

type decideInput struct {
	ID   string `path:"id" maxLength:"64"`
	Body *struct {
		Comment string `json:"comment,omitempty" maxLength:"2000"`
	}
}

func (h *handlers) registerTasks(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "list-tasks", Method: http.MethodGet, Path: "/api/v1/tasks",
		Summary: "List human tasks (pending by default), oldest first", Tags: []string{"tasks"},
	}, func(ctx context.Context, in *listTasksInput) (*listTasksOutput, error) {
		f := store.TaskFilter{RunID: in.Run, Limit: in.Limit}
		if in.Status != "all" {
			f.Status = store.TaskStatus(in.Status)
		}
		if in.Project != "" {
			p, err := h.Store.GetProject(ctx, in.Project)
			if err != nil {
				return nil, h.apiError(err)
			}
			f.ProjectID = p.ID
		}
		tasks, err := h.Store.ListTasks(ctx, f)
		if err != nil {
			return nil, h.apiError(err)
		}
		out := &listTasksOutput{}
		out.Body.Tasks = make([]TaskView, len(tasks))
		for i, t := range tasks {
			out.Body.Tasks[i] = TaskView{Task: t, Details: t.Details}
		}
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-task", Method: http.MethodGet, Path: "/api/v1/tasks/{id}",
		Summary: "Get a task", Tags: []string{"tasks"},
	}, func(ctx context.Context, in *taskPath) (*taskOutput, error) {
		t, err := h.Store.GetTask(ctx, in.ID)
		if err != nil {
			return nil, h.apiError(err)
		}
		return &taskOutput{Body: TaskView{Task: t, Details: t.Details}}, nil
	})

	for _, d := range []struct {
		verb    string
		approve bool
	}{{"approve", true}, {"reject", false}} {
		huma.Register(api, huma.Operation{
			OperationID: d.verb + "-task", Method: http.MethodPost, Path: "/api/v1/tasks/{id}/" + d.verb,
			Summary: "Decide a pending task: " + d.verb, Tags: []string{"tasks"}, MaxBodyBytes: maxBodyBytes,
		}, func(ctx context.Context, in *decideInput) (*taskOutput, error) {
			by := "unknown"
			if p, ok := PrincipalFrom(ctx); ok {
				by = p.Name
			}
			comment := ""
			if in.Body != nil {
				comment = in.Body.Comment
			}
			t, err := h.Engine.Decide(ctx, in.ID, d.approve, by, comment)
			if err != nil {
				return nil, h.apiError(err)
			}
			return &taskOutput{Body: TaskView{Task: t, Details: t.Details}}, nil
		})
	}
}
