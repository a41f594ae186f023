package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/riverqueue/river"

	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// runState is a run and its steps, loaded inside a transaction.
type runState struct {
	run   store.Run
	plan  *workflow.Plan
	steps map[string]*store.Step
	input any
	// outputs caches decoded step outputs.
	outputs map[string]any
	dirty   map[string]bool
	// vars is what expressions see, built on first use and kept current by
	// set, so advancing through n steps does not rebuild it n times.
	vars workflow.Vars
}

func (e *Engine) loadState(ctx context.Context, tx store.Tx, runID string) (*runState, error) {
	run, err := tx.GetRun(ctx, runID)
	if err != nil {
		return nil, err
	}
	plan, err := e.planByVersionID(ctx, tx, run.VersionID)
	if err != nil {
		return nil, err
	}
	rows, err := tx.ListSteps(ctx, runID)
	if err != nil {
		return nil, err
	}
	st := &runState{run: run, plan: plan, steps: make(map[string]*store.Step, len(rows)), outputs: map[string]any{}, dirty: map[string]bool{}}
	for i := range rows {
		st.steps[rows[i].StepID] = &rows[i]
	}
	if len(run.Input) > 0 {
		if st.input, err = workflow.DecodeJSON(run.Input); err != nil {
			return nil, fmt.Errorf("engine: run %s input: %w", runID, err)
		}
	}
	return st, nil
}

func (st *runState) output(id string) any {
	if v, ok := st.outputs[id]; ok {
		return v
	}
	s := st.steps[id]
	if s == nil || len(s.Output) == 0 {
		return nil
	}
	v, err := workflow.DecodeJSON(s.Output)
	if err != nil {
		return nil
	}
	st.outputs[id] = v
	return v
}

// vars is what expressions see: only steps that have finished are present.
func (e *Engine) vars(st *runState) workflow.Vars {
	if st.vars != nil {
		return st.vars
	}
	steps := make(map[string]any, len(st.steps))
	for id, s := range st.steps {
		if s.Status.Final() {
			steps[id] = st.stepVar(s)
		}
	}
	st.vars = workflow.Vars{
		"input": st.input,
		"steps": steps,
		"run": map[string]any{
			"id":        st.run.ID,
			"workflow":  st.plan.Definition.Name,
			"project":   st.plan.Definition.Project,
			"versionId": st.run.VersionID,
			"trigger":   st.run.Trigger,
			"createdAt": st.run.CreatedAt.UTC().Format(time.RFC3339Nano),
		},
		"env": map[string]any{"name": e.envName},
	}
	return st.vars
}

func (st *runState) stepVar(s *store.Step) map[string]any {
	return map[string]any{"output": st.output(s.StepID), "status": string(s.Status)}
}

func (st *runState) set(s *store.Step) {
	st.steps[s.StepID] = s
	delete(st.outputs, s.StepID)
	st.dirty[s.StepID] = true
	if st.vars != nil {
		steps := st.vars["steps"].(map[string]any)
		if s.Status.Final() {
			steps[s.StepID] = st.stepVar(s)
		} else {
			delete(steps, s.StepID)
		}
	}
}

// finishStep records a step's final state.
func (e *Engine) finishStep(st *runState, id, uses string, status store.StepStatus, out any, next []string, errMsg string) error {
	now := e.now()
	s := st.steps[id]
	if s == nil {
		s = &store.Step{RunID: st.run.ID, StepID: id, Uses: uses, StartedAt: &now}
	}
	s.Status, s.Error, s.Next, s.UpdatedAt, s.FinishedAt = status, errMsg, next, now, &now
	s.Output = nil
	if out != nil {
		b, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("engine: step %s output: %w", id, err)
		}
		s.Output = b
	}
	st.set(s)
	return nil
}

// advance moves the run as far as it can go inside tx: it runs every ready
// pure step, enqueues a job for every ready effect, timer or task, and
// settles the run's status. It is the only place that decides what runs next.
func (e *Engine) advance(ctx context.Context, tx store.Tx, st *runState) error {
	if st.run.Status.Final() {
		return nil
	}
	var jobs []river.InsertManyParams
	failed := st.failedStep() != ""
	for progressed := true; progressed && !failed; {
		progressed = false
		for _, ps := range st.plan.Steps {
			if st.steps[ps.ID] != nil {
				continue
			}
			ready, active := st.readiness(ps)
			if !ready {
				continue
			}
			progressed = true
			if !active {
				if err := e.finishStep(st, ps.ID, ps.Uses, store.StepSkipped, nil, nil, ""); err != nil {
					return err
				}
				continue
			}
			job, err := e.startStep(ctx, tx, st, ps)
			if err != nil {
				return err
			}
			if job != nil {
				jobs = append(jobs, *job)
			}
			if s := st.steps[ps.ID]; s != nil && s.Status == store.StepFailed {
				failed = true
				break
			}
		}
	}
	if len(jobs) > 0 {
		if _, err := e.river.InsertManyTx(ctx, tx.SQL(), jobs); err != nil {
			return fmt.Errorf("engine: enqueue steps of run %s: %w", st.run.ID, err)
		}
	}
	return e.settle(ctx, tx, st)
}

// failedStep is the first step in definition order that failed, if any.
func (st *runState) failedStep() string {
	for _, ps := range st.plan.Steps {
		if s := st.steps[ps.ID]; s != nil && s.Status == store.StepFailed {
			return ps.ID
		}
	}
	return ""
}

// readiness reports whether all of a step's predecessors are final and
// whether at least one edge into it was taken.
func (st *runState) readiness(ps *workflow.PlanStep) (ready, active bool) {
	if len(ps.Preds) == 0 {
		return true, true
	}
	for _, edge := range ps.Preds {
		p := st.steps[edge.From]
		if p == nil || !p.Status.Final() {
			return false, false
		}
		if p.Status == store.StepSucceeded && (p.Next == nil || slices.Contains(p.Next, ps.ID)) {
			active = true
		}
	}
	return true, active
}

// startStep runs a pure step now, or prepares the job for another kind.
func (e *Engine) startStep(ctx context.Context, tx store.Tx, st *runState, ps *workflow.PlanStep) (*river.InsertManyParams, error) {
	vars := e.vars(st)
	if ps.If != "" {
		ok, err := st.plan.EvalBool(ps.If, vars)
		if err != nil {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, "if: "+err.Error())
		}
		if !ok {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepSkipped, nil, nil, "")
		}
	}
	node, ok := e.registry.Node(ps.Uses)
	if !ok {
		return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, fmt.Sprintf("unknown node type %q", ps.Uses))
	}
	now := e.now()
	switch node.Kind(ps.With) {
	case nodes.Inline:
		exec, _ := node.(nodes.Executor)
		with, err := st.plan.RenderWith(ps, vars)
		if err != nil {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, err.Error())
		}
		res, err := exec.Execute(ctx, &nodes.Call{Plan: st.plan, Step: ps, With: with, Vars: vars, RunID: st.run.ID, Env: &e.env})
		if err != nil {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, res.Output, nil, err.Error())
		}
		return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepSucceeded, res.Output, res.Next, "")

	case nodes.Effect:
		st.set(&store.Step{RunID: st.run.ID, StepID: ps.ID, Uses: ps.Uses, Status: store.StepQueued, UpdatedAt: now})
		return &river.InsertManyParams{Args: StepArgs{RunID: st.run.ID, StepID: ps.ID, Attempt: 1, Purpose: purposeExecute}}, nil

	case nodes.Timer:
		with, err := st.plan.RenderWith(ps, vars)
		if err != nil {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, err.Error())
		}
		until, err := nodes.Wait{}.Until(with, now)
		if err != nil {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, err.Error())
		}
		st.set(&store.Step{RunID: st.run.ID, StepID: ps.ID, Uses: ps.Uses, Status: store.StepWaiting, StartedAt: &now, UpdatedAt: now})
		return &river.InsertManyParams{Args: StepArgs{RunID: st.run.ID, StepID: ps.ID, Purpose: purposeTimer, NotBefore: until}, InsertOpts: e.dueAt(until)}, nil

	case nodes.Human:
		with, err := st.plan.RenderWith(ps, vars)
		if err != nil {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, err.Error())
		}
		spec, err := nodes.Approval{}.Task(ps, with)
		if err != nil {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, err.Error())
		}
		details, err := json.Marshal(spec.Details)
		if err != nil {
			return nil, e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, "details: "+err.Error())
		}
		expires := now.Add(spec.Timeout)
		task := store.Task{ID: store.NewID("task"), RunID: st.run.ID, StepID: ps.ID, ProjectID: st.run.ProjectID, Status: store.TaskPending,
			Role: spec.Role, Title: spec.Title, Details: details, CreatedAt: now, ExpiresAt: &expires}
		if err := tx.CreateTask(ctx, task); err != nil {
			return nil, err
		}
		st.set(&store.Step{RunID: st.run.ID, StepID: ps.ID, Uses: ps.Uses, Status: store.StepWaiting, StartedAt: &now, UpdatedAt: now})
		return &river.InsertManyParams{Args: StepArgs{RunID: st.run.ID, StepID: ps.ID, TaskID: task.ID, Purpose: purposeTaskTimeout, NotBefore: expires}, InsertOpts: e.dueAt(expires)}, nil
	}
	return nil, fmt.Errorf("engine: step %s: unhandled kind", ps.ID)
}

// settle writes dirty steps and the run's status.
func (e *Engine) settle(ctx context.Context, tx store.Tx, st *runState) error {
	now := e.now()
	failed := st.failedStep()
	run := st.run
	if run.StartedAt == nil {
		run.StartedAt = &now
	}
	// Steps not reached yet sit behind a waiting or working one; they do
	// not decide the status on their own.
	working, waiting, unreached := false, false, false
	for _, ps := range st.plan.Steps {
		s := st.steps[ps.ID]
		switch {
		case s == nil:
			unreached = true
		case s.Status == store.StepWaiting:
			waiting = true
		case !s.Status.Final():
			working = true
		}
	}
	switch {
	case failed != "":
		run.Status = store.RunFailed
		run.Error = fmt.Sprintf("step %s failed: %s", failed, st.steps[failed].Error)
		if err := e.abandon(ctx, tx, st, store.StepCancelled); err != nil {
			return err
		}
	case !working && !waiting && !unreached:
		out, err := e.runOutput(st)
		if err != nil {
			run.Status, run.Error = store.RunFailed, "output: "+err.Error()
		} else {
			run.Status = store.RunSucceeded
			if run.Output, err = json.Marshal(out); err != nil {
				return fmt.Errorf("engine: run %s output: %w", run.ID, err)
			}
		}
	case !working && waiting:
		run.Status = store.RunWaiting
	default:
		run.Status = store.RunRunning
	}
	if run.Status.Final() {
		run.FinishedAt = &now
	}
	for _, ps := range st.plan.Steps {
		if st.dirty[ps.ID] {
			if err := tx.UpsertStep(ctx, *st.steps[ps.ID]); err != nil {
				return err
			}
		}
	}
	clear(st.dirty)
	run.UpdatedAt = now
	if err := tx.UpdateRun(ctx, run); err != nil {
		return err
	}
	st.run = run
	return nil
}

// abandon ends every unfinished step of a run that failed or was cancelled,
// and withdraws its pending tasks. Jobs still queued find the run final and
// do nothing.
func (e *Engine) abandon(ctx context.Context, tx store.Tx, st *runState, status store.StepStatus) error {
	now := e.now()
	for _, ps := range st.plan.Steps {
		s := st.steps[ps.ID]
		if s != nil && s.Status.Final() {
			continue
		}
		if s != nil && s.Status == store.StepWaiting && ps.Uses == "approval" {
			tasks, err := tx.ListTasks(ctx, store.TaskFilter{RunID: st.run.ID, Status: store.TaskPending})
			if err != nil {
				return err
			}
			for _, t := range tasks {
				if _, err := tx.DecideTask(ctx, t.ID, store.TaskCanceled, "moat", "run ended", now); err != nil && !errors.Is(err, store.ErrConflict) {
					return err
				}
			}
		}
		if s == nil {
			s = &store.Step{RunID: st.run.ID, StepID: ps.ID, Uses: ps.Uses}
		}
		s.Status, s.UpdatedAt, s.FinishedAt = status, now, &now
		st.set(s)
	}
	return nil
}

// runOutput is the definition's output template, or the output of the last
// step in definition order that succeeded.
func (e *Engine) runOutput(st *runState) (any, error) {
	if st.plan.Definition.Output != nil {
		return st.plan.Render(st.plan.Definition.Output, e.vars(st))
	}
	for i := len(st.plan.Steps) - 1; i >= 0; i-- {
		id := st.plan.Steps[i].ID
		if s := st.steps[id]; s != nil && s.Status == store.StepSucceeded {
			return st.output(id), nil
		}
	}
	return nil, nil
}
