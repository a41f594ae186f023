package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// InputError lists why a run's input does not match the workflow's schema.
type InputError struct {
	Problems workflow.Problems
}

func (e *InputError) Error() string {
	return "engine: input does not match the schema:\n" + e.Problems.Error()
}
func (e *InputError) Unwrap() error { return ErrInvalidInput }

// Saved is the outcome of SaveWorkflow.
type Saved struct {
	Workflow store.Workflow
	Version  store.Version
	// Created is false when the definition was unchanged.
	Created bool
	Plan    *workflow.Plan
}

// SaveWorkflow validates a definition (YAML or JSON) and stores it as a new
// immutable version unless it is unchanged. A version with a schedule starts
// its tick chain in the same transaction. Validation failures are
// workflow.Problems.
func (e *Engine) SaveWorkflow(ctx context.Context, filename string, src []byte) (Saved, error) {
	plan, err := workflow.Load(filename, src, e.registry)
	if err != nil {
		return Saved{}, err
	}
	def := plan.Definition
	nv := store.NewVersion{Project: def.Project, Name: def.Name, Hash: plan.Hash, Definition: plan.Canonical, Source: src,
		At: e.now()}
	if def.Trigger.Webhook != nil {
		nv.WebhookPath = def.Trigger.Webhook.Path
	}
	if def.Trigger.Schedule != nil {
		nv.Schedule = def.Trigger.Schedule.Cron
	}
	var saved Saved
	err = e.store.InTx(ctx, func(tx store.Tx) error {
		wf, ver, created, err := tx.SaveWorkflowVersion(ctx, nv)
		if err != nil {
			return err
		}
		saved = Saved{Workflow: wf, Version: ver, Created: created, Plan: plan}
		if created && def.Trigger.Schedule != nil {
			return e.enqueueTick(ctx, tx, wf.ID, ver.ID, def.Trigger.Schedule, e.now())
		}
		return nil
	})
	return saved, err
}

// StartRequest starts a run.
type StartRequest struct {
	WorkflowID string
	// VersionID pins a version; empty means the latest.
	VersionID string
	// Input is decoded JSON (see workflow.DecodeJSON); nil means {}.
	Input   any
	Trigger string
}

// StartRun validates the input and commits the run with the job that
// advances it. Once StartRun returns, the run survives any crash.
func (e *Engine) StartRun(ctx context.Context, req StartRequest) (store.Run, error) {
	wf, err := e.store.GetWorkflowByID(ctx, req.WorkflowID)
	if err != nil {
		return store.Run{}, err
	}
	versionID := req.VersionID
	if versionID == "" {
		versionID = wf.LatestID
	}
	plan, err := e.planByVersionID(ctx, e.store, versionID)
	if err != nil {
		return store.Run{}, err
	}
	input := req.Input
	if input == nil {
		input = map[string]any{}
	}
	if problems := plan.ValidateInput(input); len(problems) > 0 {
		return store.Run{}, &InputError{Problems: problems}
	}
	trigger := req.Trigger
	if trigger == "" {
		trigger = "manual"
	}
	// The run's payload keys are made before its transaction, so that the
	// single writer is not held while they are stored.
	id := store.NewID("run")
	if err := e.store.PreparePayloads(ctx, id); err != nil {
		return store.Run{}, err
	}
	var run store.Run
	err = e.store.InTx(ctx, func(tx store.Tx) error {
		run, err = e.createRun(ctx, tx, id, wf, versionID, input, trigger)
		return err
	})
	if err != nil {
		return store.Run{}, err
	}
	e.changed(run.ID)
	return run, nil
}

// Cancel stops a run: unfinished steps are cancelled, pending tasks
// withdrawn, and jobs still queued for it do nothing when they run.
func (e *Engine) Cancel(ctx context.Context, runID string) (store.Run, error) {
	var run store.Run
	err := e.store.InTx(ctx, func(tx store.Tx) error {
		st, err := e.loadState(ctx, tx, runID)
		if err != nil {
			return err
		}
		if st.run.Status.Final() {
			return fmt.Errorf("%w: run %s is %s", ErrFinal, runID, st.run.Status)
		}
		if err := e.abandon(ctx, tx, st, store.StepCancelled); err != nil {
			return err
		}
		for _, ps := range st.plan.Steps {
			if st.dirty[ps.ID] {
				if err := tx.UpsertStep(ctx, *st.steps[ps.ID]); err != nil {
					return err
				}
			}
		}
		now := e.now()
		st.run.Status, st.run.Error, st.run.UpdatedAt, st.run.FinishedAt = store.RunCancelled, "cancelled", now, &now
		if err := tx.UpdateRun(ctx, st.run); err != nil {
			return err
		}
		run = st.run
		return nil
	})
	if err == nil {
		e.changed(runID)
	}
	return run, err
}

// Decide approves or rejects a pending task and moves its run on.
func (e *Engine) Decide(ctx context.Context, taskID string, approve bool, by, comment string) (store.Task, error) {
	status, decision := store.TaskRejected, "rejected"
	if approve {
		status, decision = store.TaskApproved, "approved"
	}
	var task store.Task
	err := e.store.InTx(ctx, func(tx store.Tx) error {
		t, err := tx.DecideTask(ctx, taskID, status, by, comment, e.now())
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%w: %v", ErrNotPending, err)
		}
		if err != nil {
			return err
		}
		task = t
		return e.resolveApproval(ctx, tx, t.RunID, t.StepID, decision, by, comment)
	})
	if err == nil {
		e.changed(task.RunID)
	}
	return task, err
}

// Responders lists the respond steps of a version, whose output answers the
// webhook that started a run.
func (e *Engine) Responders(ctx context.Context, versionID string) ([]string, error) {
	plan, err := e.planByVersionID(ctx, e.store, versionID)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, ps := range plan.Steps {
		if ps.Uses == "respond" {
			ids = append(ids, ps.ID)
		}
	}
	return ids, nil
}

// createRun inserts a run and advances it in the same transaction: its
// leading pure steps run at once and its first effects are enqueued, so a
// run of pure steps needs no job at all. Either all of it commits or none.
func (e *Engine) createRun(ctx context.Context, tx store.Tx, id string, wf store.Workflow, versionID string, input any, trigger string) (store.Run, error) {
	plan, err := e.planByVersionID(ctx, tx, versionID)
	if err != nil {
		return store.Run{}, err
	}
	data, err := json.Marshal(input)
	if err != nil {
		return store.Run{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	now := e.now()
	run := store.Run{ID: id, ProjectID: wf.ProjectID, WorkflowID: wf.ID, VersionID: versionID, Status: store.RunPending,
		Trigger: trigger, Input: data, CreatedAt: now, UpdatedAt: now}
	if e.keep != nil {
		run.Retention = e.keep(plan.Definition)
	}
	if err := tx.CreateRun(ctx, run); err != nil {
		return store.Run{}, err
	}
	st := &runState{run: run, plan: plan, steps: map[string]*store.Step{}, input: input, outputs: map[string]any{}, dirty: map[string]bool{}}
	if err := e.advance(ctx, tx, st); err != nil {
		return store.Run{}, err
	}
	return st.run, nil
}
