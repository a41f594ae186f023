package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

const (
	timeFormat = time.RFC3339Nano
	maxWait    = time.Minute
)

// RunView is a run as the API shows it, with its step timeline.
type RunView struct {
	store.Run
	Input    json.RawMessage `json:"input,omitempty"`
	Output   json.RawMessage `json:"output,omitempty"`
	Steps    []StepView      `json:"steps,omitempty"`
	Attempts []store.Attempt `json:"attempts,omitempty"`
	// Purged says when each kind of the run's payloads (input, steps,
	// output) was purged or erased; what is purged reads as absent.
	Purged map[string]time.Time `json:"purged,omitempty"`
}

// StepView is one step of the timeline.
type StepView struct {
	store.Step
	Output json.RawMessage `json:"output,omitempty"`
}

// ViewRun assembles a run with its timeline.
func ViewRun(r store.Run, steps []store.Step, attempts []store.Attempt) RunView {
	v := RunView{Run: r, Input: r.Input, Output: r.Output, Attempts: attempts}
	for _, s := range steps {
		v.Steps = append(v.Steps, StepView{Step: s, Output: s.Output})
	}
	return v
}

type startRunInput struct {
	WorkflowPath
	Wait string `query:"wait" doc:"wait up to this long (e.g. 10s, at most 1m) for the run to finish before answering"`
	Body struct {
		Input   json.RawMessage `json:"input,omitempty" doc:"the run's input; checked against the workflow's input schema"`
		Version int             `json:"version,omitempty" minimum:"1" doc:"version number to run; the latest when absent"`
	}
}

type runOutput struct {
	Status int
	Body   RunView
}

type runPath struct {
	ID   string `path:"id" maxLength:"64"`
	Wait string `query:"wait" doc:"wait up to this long (at most 1m) for the run to finish"`
}

type cancelInput struct {
	ID string `path:"id" maxLength:"64"`
}

type listRunsInput struct {
	Project  string `query:"project" maxLength:"63"`
	Workflow string `query:"workflow" maxLength:"63" doc:"workflow name; needs project"`
	Status   string `query:"status" enum:"pending,running,waiting,succeeded,failed,cancelled,"`
	Limit    int    `query:"limit" minimum:"0" maximum:"500" default:"50"`
	Cursor   string `query:"cursor" maxLength:"200" doc:"nextCursor from the previous page"`
}

type listRunsOutput struct {
	Body struct {
		Runs       []store.Run `json:"runs"`
		NextCursor string      `json:"nextCursor,omitempty"`
	}
}

func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := workflow.ParseDuration(s)
	if err != nil || d < 0 || d > maxWait {
		return 0, huma.Error422UnprocessableEntity("wait must be a duration between 0s and 1m", &huma.ErrorDetail{Location: "query.wait", Value: s, Message: "invalid duration"})
	}
	return d, nil
}

func (h *handlers) registerRuns(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "start-run", Method: http.MethodPost, Path: "/api/v1/projects/{project}/workflows/{name}/runs",
		Summary:     "Start a run",
		Description: "Validates the input against the workflow's schema and starts a run. The run is durable once this answers 202 (or 200 when it finished within `wait`).",
		Tags:        []string{"runs"}, MaxBodyBytes: maxBodyBytes, DefaultStatus: http.StatusAccepted,
	}, func(ctx context.Context, in *startRunInput) (*runOutput, error) {
		wait, err := parseWait(in.Wait)
		if err != nil {
			return nil, err
		}
		wf, err := h.Store.GetWorkflow(ctx, in.Project, in.Name)
		if err != nil {
			return nil, h.apiError(err)
		}
		req := engine.StartRequest{WorkflowID: wf.ID, Trigger: "api"}
		if in.Body.Version > 0 {
			v, err := h.Store.GetVersionByNumber(ctx, wf.ID, in.Body.Version)
			if err != nil {
				return nil, h.apiError(err)
			}
			req.VersionID = v.ID
		}
		if len(in.Body.Input) > 0 {
			if req.Input, err = workflow.DecodeJSON(in.Body.Input); err != nil {
				return nil, huma.Error422UnprocessableEntity("input: "+err.Error(), &huma.ErrorDetail{Location: "body.input", Message: err.Error()})
			}
		}
		run, err := h.Engine.StartRun(ctx, req)
		if err != nil {
			return nil, h.apiError(err)
		}
		return h.runAnswer(ctx, run.ID, wait)
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-run", Method: http.MethodGet, Path: "/api/v1/runs/{id}",
		Summary: "Get a run with its step timeline and attempts", Tags: []string{"runs"},
	}, func(ctx context.Context, in *runPath) (*runOutput, error) {
		wait, err := parseWait(in.Wait)
		if err != nil {
			return nil, err
		}
		return h.runAnswer(ctx, in.ID, wait)
	})

	huma.Register(api, huma.Operation{
		OperationID: "list-runs", Method: http.MethodGet, Path: "/api/v1/runs",
		Summary: "List runs, newest first", Tags: []string{"runs"},
	}, func(ctx context.Context, in *listRunsInput) (*listRunsOutput, error) {
		f := store.RunFilter{Status: store.RunStatus(in.Status), Limit: in.Limit, Cursor: in.Cursor}
		if in.Workflow != "" && in.Project == "" {
			return nil, huma.Error422UnprocessableEntity("workflow needs project", &huma.ErrorDetail{Location: "query.project", Message: "required with workflow"})
		}
		if in.Project != "" {
			p, err := h.Store.GetProject(ctx, in.Project)
			if err != nil {
				return nil, h.apiError(err)
			}
			f.ProjectID = p.ID
		}
		if in.Workflow != "" {
			wf, err := h.Store.GetWorkflow(ctx, in.Project, in.Workflow)
			if err != nil {
				return nil, h.apiError(err)
			}
			f.WorkflowID = wf.ID
		}
		runs, next, err := h.Store.ListRuns(ctx, f)
		if errors.Is(err, store.ErrInvalid) {
			return nil, huma.Error422UnprocessableEntity("cursor is not one this server issued; pass nextCursor from a previous page",
				&huma.ErrorDetail{Location: "query.cursor", Message: "malformed cursor", Value: in.Cursor})
		}
		if err != nil {
			return nil, h.apiError(err)
		}
		out := &listRunsOutput{}
		out.Body.Runs = append([]store.Run{}, runs...)
		out.Body.NextCursor = next
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "cancel-run", Method: http.MethodPost, Path: "/api/v1/runs/{id}/cancel",
		Summary: "Cancel a run", Tags: []string{"runs"},
	}, func(ctx context.Context, in *cancelInput) (*runOutput, error) {
		if _, err := h.Engine.Cancel(ctx, in.ID); err != nil {
			return nil, h.apiError(err)
		}
		return h.runAnswer(ctx, in.ID, 0)
	})
}

// runAnswer loads a run's full view, waiting up to wait for it to finish.
func (h *handlers) runAnswer(ctx context.Context, id string, wait time.Duration) (*runOutput, error) {
	var (
		run   store.Run
		steps []store.Step
		err   error
	)
	if wait > 0 {
		waitCtx, cancel := context.WithTimeout(ctx, wait)
		_, _, err = h.Engine.WaitFor(waitCtx, id, nil)
		// Waiting long enough is no error: answer with the current state,
		// read again below because the deadline may have cut a read short.
		timedOut := waitCtx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil && !timedOut {
			return nil, h.apiError(err)
		}
	}
	if run, err = h.Store.GetRun(ctx, id); err == nil {
		steps, err = h.Store.ListSteps(ctx, id)
	}
	if err != nil {
		return nil, h.apiError(err)
	}
	attempts, err := h.Store.ListAttempts(ctx, id)
	if err != nil {
		return nil, h.apiError(err)
	}
	purged, err := h.Store.PayloadPurges(ctx, id)
	if err != nil {
		return nil, h.apiError(err)
	}
	status := http.StatusOK
	if !run.Status.Final() {
		status = http.StatusAccepted
	}
	view := ViewRun(run, steps, attempts)
	if len(purged) > 0 {
		view.Purged = purged
	}
	return &runOutput{Status: status, Body: view}, nil
}
