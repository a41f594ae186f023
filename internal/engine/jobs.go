package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/robfig/cron/v3"

	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// defaultStepTimeout bounds one attempt of an effect whose step sets none.
const defaultStepTimeout = 10 * time.Minute

const (
	purposeExecute     = "execute"
	purposeTimer       = "timer"
	purposeTaskTimeout = "task-timeout"
)

// StepArgs is one attempt of an effect, the end of a wait, or the deadline
// of a human task.
type StepArgs struct {
	RunID     string    `json:"run"`
	StepID    string    `json:"step"`
	Attempt   int       `json:"attempt,omitempty"`
	TaskID    string    `json:"task,omitempty"`
	Purpose   string    `json:"purpose"`
	NotBefore time.Time `json:"notBefore,omitzero"`
}

func (StepArgs) Kind() string { return "moat.step" }

// ScheduleArgs is the next tick of a scheduled workflow version.
type ScheduleArgs struct {
	WorkflowID string    `json:"workflow"`
	VersionID  string    `json:"version"`
	NotBefore  time.Time `json:"notBefore,omitzero"`
}

// schedulerLag is how often River's scheduler makes scheduled jobs
// available (not configurable in River). A job due sooner than that is
// inserted available and its worker sleeps until NotBefore, so a 100 ms wait
// or retry backoff is not stretched to seconds; a crash meanwhile loses
// nothing, as the job is still in the queue.
const schedulerLag = 5 * time.Second

// dueAt returns the insert options for a job due at the given time.
func (e *Engine) dueAt(at time.Time) *river.InsertOpts {
	if at.Sub(e.now()) >= schedulerLag {
		return &river.InsertOpts{ScheduledAt: at}
	}
	return nil
}

// sleepUntil waits for a job's NotBefore.
func sleepUntil(ctx context.Context, at time.Time) error {
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (ScheduleArgs) Kind() string { return "moat.schedule" }

// completeJob marks the job done inside tx, so the job's completion and the
// state it produced commit or roll back together. The driver type parameter
// only satisfies the signature; River takes the driver from the worker's
// client, so this is right for Postgres as well.
func completeJob[T river.JobArgs](ctx context.Context, tx store.Tx, job *river.Job[T]) error {
	if _, err := river.JobCompleteTx[*riversqlite.Driver](ctx, tx.SQL(), job); err != nil {
		return fmt.Errorf("engine: complete job %d: %w", job.ID, err)
	}
	return nil
}

type stepWorker struct {
	river.WorkerDefaults[StepArgs]
	e *Engine
}

func (w *stepWorker) Work(ctx context.Context, job *river.Job[StepArgs]) error {
	if err := sleepUntil(ctx, job.Args.NotBefore); err != nil {
		return err
	}
	var err error
	switch job.Args.Purpose {
	case purposeExecute:
		err = w.e.executeEffect(ctx, job)
	case purposeTimer:
		err = w.e.endTimer(ctx, job)
	case purposeTaskTimeout:
		err = w.e.expireTask(ctx, job)
	default:
		err = fmt.Errorf("engine: unknown step job purpose %q", job.Args.Purpose)
	}
	if err == nil {
		w.e.changed(job.Args.RunID)
	}
	return err
}

// IdempotencyKey is the key of one attempt of a step: stable across
// crashes, so a receiver can drop a repeat.
func IdempotencyKey(runID, stepID string, attempt int) string {
	return fmt.Sprintf("%s.%s.%d", runID, stepID, attempt)
}

// executeEffect runs one attempt. The attempt is recorded before the effect
// and its result after, each in its own transaction; the effect itself runs
// outside any transaction.
func (e *Engine) executeEffect(ctx context.Context, job *river.Job[StepArgs]) error {
	args := job.Args
	var (
		call    *nodes.Call
		exec    nodes.Executor
		timeout time.Duration
		done    bool
	)
	err := e.store.InTx(ctx, func(tx store.Tx) error {
		st, err := e.loadState(ctx, tx, args.RunID)
		if errors.Is(err, store.ErrNotFound) {
			done = true
			return completeJob(ctx, tx, job)
		}
		if err != nil {
			return err
		}
		s := st.steps[args.StepID]
		if st.run.Status.Final() || s == nil || s.Status.Final() || s.Attempts > args.Attempt {
			done = true // cancelled, or a stale job
			return completeJob(ctx, tx, job)
		}
		ps := st.plan.Step(args.StepID)
		node, _ := e.registry.Node(ps.Uses)
		vars := e.vars(st)
		with, err := st.plan.RenderWith(ps, vars)
		if err == nil {
			var ok bool
			if exec, ok = node.(nodes.Executor); !ok {
				err = fmt.Errorf("node type %q cannot execute", ps.Uses)
			}
		}
		if err != nil {
			done = true
			if err := e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, nil, nil, err.Error()); err != nil {
				return err
			}
			if err := e.advance(ctx, tx, st); err != nil {
				return err
			}
			return completeJob(ctx, tx, job)
		}
		now := e.now().UTC()
		key := IdempotencyKey(args.RunID, args.StepID, args.Attempt)
		if s.Attempts < args.Attempt {
			s.Attempts, s.Status, s.UpdatedAt = args.Attempt, store.StepRunning, now
			if s.StartedAt == nil {
				s.StartedAt = &now
			}
			if err := tx.UpsertStep(ctx, *s); err != nil {
				return err
			}
			if err := tx.UpsertAttempt(ctx, store.Attempt{RunID: args.RunID, StepID: args.StepID, Number: args.Attempt, Status: store.AttemptRunning, IdempotencyKey: key, StartedAt: now}); err != nil {
				return err
			}
			if st.run.Status != store.RunRunning {
				st.run.Status, st.run.UpdatedAt = store.RunRunning, now
				if err := tx.UpdateRun(ctx, st.run); err != nil {
					return err
				}
			}
		}
		timeout = time.Duration(ps.Timeout)
		if timeout <= 0 {
			timeout = defaultStepTimeout
		}
		call = &nodes.Call{Plan: st.plan, Step: ps, With: with, Vars: vars, IdempotencyKey: key, Attempt: args.Attempt, Env: &e.env}
		return nil
	})
	if err != nil || done {
		return err
	}
	e.changed(args.RunID)

	res, execErr := runGuarded(ctx, exec, call, timeout)
	if ctx.Err() != nil {
		// Shutting down: leave the attempt open; it runs again with the same
		// idempotency key after restart.
		return ctx.Err()
	}
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return e.store.InTx(commitCtx, func(tx store.Tx) error {
		return e.recordAttempt(commitCtx, tx, job, call, res, execErr)
	})
}

func runGuarded(ctx context.Context, exec nodes.Executor, call *nodes.Call, timeout time.Duration) (res nodes.Result, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = nodes.Permanent(fmt.Errorf("node %s panicked: %v\n%s", call.Step.Uses, p, debug.Stack()))
		}
	}()
	res, err = exec.Execute(ctx, call)
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("step timed out after %s: %w", timeout, err)
	}
	return res, err
}

func (e *Engine) recordAttempt(ctx context.Context, tx store.Tx, job *river.Job[StepArgs], call *nodes.Call, res nodes.Result, execErr error) error {
	args := job.Args
	now := e.now().UTC()
	attempt := store.Attempt{RunID: args.RunID, StepID: args.StepID, Number: args.Attempt, Status: store.AttemptSucceeded,
		IdempotencyKey: call.IdempotencyKey, StartedAt: now, FinishedAt: &now}
	if execErr != nil {
		attempt.Status, attempt.Error = store.AttemptFailed, execErr.Error()
	}
	st, err := e.loadState(ctx, tx, args.RunID)
	if err != nil {
		return err
	}
	if prior, err := tx.ListAttempts(ctx, args.RunID); err == nil {
		for _, a := range prior {
			if a.StepID == args.StepID && a.Number == args.Attempt {
				attempt.StartedAt = a.StartedAt
			}
		}
	}
	if err := tx.UpsertAttempt(ctx, attempt); err != nil {
		return err
	}
	s := st.steps[args.StepID]
	if st.run.Status.Final() || s == nil || s.Status.Final() || s.Attempts != args.Attempt {
		return completeJob(ctx, tx, job)
	}
	ps := call.Step
	switch {
	case execErr == nil:
		if err := e.finishStep(st, ps.ID, ps.Uses, store.StepSucceeded, res.Output, res.Next, ""); err != nil {
			return err
		}
	case !nodes.IsPermanent(execErr) && args.Attempt < maxAttempts(ps):
		s.Status, s.Error, s.UpdatedAt = store.StepQueued, execErr.Error(), now
		st.set(s)
		at := now.Add(backoff(ps.Retry, args.Attempt))
		next := StepArgs{RunID: args.RunID, StepID: args.StepID, Attempt: args.Attempt + 1, Purpose: purposeExecute, NotBefore: at}
		if _, err := e.river.InsertTx(ctx, tx.SQL(), next, e.dueAt(at)); err != nil {
			return fmt.Errorf("engine: enqueue retry of %s: %w", ps.ID, err)
		}
	default:
		if err := e.finishStep(st, ps.ID, ps.Uses, store.StepFailed, res.Output, nil, execErr.Error()); err != nil {
			return err
		}
	}
	if err := e.advance(ctx, tx, st); err != nil {
		return err
	}
	return completeJob(ctx, tx, job)
}

func maxAttempts(ps *workflow.PlanStep) int {
	if ps.Retry == nil || ps.Retry.MaxAttempts < 1 {
		return 1
	}
	return ps.Retry.MaxAttempts
}

// backoff is the delay before attempt n+1: exponential from Backoff (1s by
// default) by Multiplier (2), capped at MaxBackoff (5m), with equal jitter so
// retries of many runs spread out but never fire at once.
func backoff(r *workflow.Retry, n int) time.Duration {
	base, mult, ceiling := time.Second, 2.0, 5*time.Minute
	if r != nil {
		if r.Backoff > 0 {
			base = time.Duration(r.Backoff)
		}
		if r.Multiplier >= 1 {
			mult = r.Multiplier
		}
		if r.MaxBackoff > 0 {
			ceiling = time.Duration(r.MaxBackoff)
		}
	}
	d := float64(base)
	for i := 1; i < n && d < float64(ceiling); i++ {
		d *= mult
	}
	d = min(d, float64(ceiling))
	half := d / 2
	return time.Duration(half + rand.Float64()*half)
}

// endTimer finishes a wait step when its time has come.
func (e *Engine) endTimer(ctx context.Context, job *river.Job[StepArgs]) error {
	return e.store.InTx(ctx, func(tx store.Tx) error {
		st, err := e.loadState(ctx, tx, job.Args.RunID)
		if errors.Is(err, store.ErrNotFound) {
			return completeJob(ctx, tx, job)
		}
		if err != nil {
			return err
		}
		s := st.steps[job.Args.StepID]
		if st.run.Status.Final() || s == nil || s.Status != store.StepWaiting {
			return completeJob(ctx, tx, job)
		}
		until := job.Args.NotBefore
		if until.IsZero() {
			until = job.ScheduledAt
		}
		out := map[string]any{"waitedUntil": until.UTC().Format(time.RFC3339Nano)}
		if err := e.finishStep(st, s.StepID, s.Uses, store.StepSucceeded, out, nil, ""); err != nil {
			return err
		}
		if err := e.advance(ctx, tx, st); err != nil {
			return err
		}
		return completeJob(ctx, tx, job)
	})
}

// expireTask ends an approval whose deadline passed without a decision.
func (e *Engine) expireTask(ctx context.Context, job *river.Job[StepArgs]) error {
	return e.store.InTx(ctx, func(tx store.Tx) error {
		_, err := tx.DecideTask(ctx, job.Args.TaskID, store.TaskExpired, "moat", "no decision before the deadline", e.now().UTC())
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			return completeJob(ctx, tx, job) // decided in time
		}
		if err != nil {
			return err
		}
		if err := e.resolveApproval(ctx, tx, job.Args.RunID, job.Args.StepID, "expired", "moat", ""); err != nil {
			return err
		}
		return completeJob(ctx, tx, job)
	})
}

// resolveApproval finishes an approval step with a decision and advances.
func (e *Engine) resolveApproval(ctx context.Context, tx store.Tx, runID, stepID, decision, by, comment string) error {
	st, err := e.loadState(ctx, tx, runID)
	if err != nil {
		return err
	}
	s := st.steps[stepID]
	if st.run.Status.Final() || s == nil || s.Status != store.StepWaiting {
		return nil
	}
	ps := st.plan.Step(stepID)
	out := map[string]any{"decision": decision, "approved": decision == "approved", "decidedBy": by, "comment": comment,
		"decidedAt": e.now().UTC().Format(time.RFC3339Nano)}
	status, msg := store.StepSucceeded, ""
	policy := map[string]string{"rejected": "onReject", "expired": "onTimeout"}[decision]
	if policy != "" {
		if v, _ := ps.With[policy].(string); v != "continue" {
			status, msg = store.StepFailed, "approval "+decision
			if decision == "rejected" {
				msg += " by " + by
			}
		}
	}
	if err := e.finishStep(st, stepID, s.Uses, status, out, nil, msg); err != nil {
		return err
	}
	return e.advance(ctx, tx, st)
}

type scheduleWorker struct {
	river.WorkerDefaults[ScheduleArgs]
	e *Engine
}

// Work starts the scheduled run and enqueues the next tick, unless a newer
// version has replaced the one this chain belongs to.
func (w *scheduleWorker) Work(ctx context.Context, job *river.Job[ScheduleArgs]) error {
	e := w.e
	if err := sleepUntil(ctx, job.Args.NotBefore); err != nil {
		return err
	}
	var runID string
	err := e.store.InTx(ctx, func(tx store.Tx) error {
		wf, err := tx.GetWorkflowByID(ctx, job.Args.WorkflowID)
		if errors.Is(err, store.ErrNotFound) {
			return completeJob(ctx, tx, job)
		}
		if err != nil {
			return err
		}
		if wf.LatestID != job.Args.VersionID {
			return completeJob(ctx, tx, job)
		}
		plan, err := e.planByVersionID(ctx, tx, job.Args.VersionID)
		if err != nil {
			return err
		}
		sched := plan.Definition.Trigger.Schedule
		if sched == nil {
			return completeJob(ctx, tx, job)
		}
		input := sched.Input
		if input == nil {
			input = map[string]any{}
		}
		if problems := plan.ValidateInput(input); len(problems) > 0 {
			e.log.Warn("scheduled input does not match the workflow's input schema; tick skipped", "workflow", wf.ID, "problems", len(problems))
		} else {
			run, err := e.createRun(ctx, tx, wf, job.Args.VersionID, input, "schedule")
			if err != nil {
				return err
			}
			runID = run.ID
		}
		if err := e.enqueueTick(ctx, tx, wf.ID, job.Args.VersionID, sched, e.now()); err != nil {
			return err
		}
		return completeJob(ctx, tx, job)
	})
	if err == nil && runID != "" {
		e.changed(runID)
	}
	return err
}

// enqueueTick schedules the next run of a version after the given time.
// Ticks missed while the server was down are not replayed one by one: the
// chain resumes with one run and the next time after now.
func (e *Engine) enqueueTick(ctx context.Context, tx store.Tx, workflowID, versionID string, sched *workflow.Schedule, after time.Time) error {
	spec := sched.Cron
	if sched.Timezone != "" {
		spec = "CRON_TZ=" + sched.Timezone + " " + spec
	}
	schedule, err := cron.ParseStandard(spec)
	if err != nil {
		return fmt.Errorf("engine: schedule %q: %w", sched.Cron, err)
	}
	next := schedule.Next(after)
	if next.IsZero() {
		return nil
	}
	_, err = e.river.InsertTx(ctx, tx.SQL(), ScheduleArgs{WorkflowID: workflowID, VersionID: versionID, NotBefore: next}, e.dueAt(next))
	if err != nil {
		return fmt.Errorf("engine: enqueue schedule tick: %w", err)
	}
	return nil
}

// createRun inserts a run and advances it in the same transaction: its
// leading pure steps run at once and its first effects are enqueued, so a
// run of pure steps needs no job at all. Either all of it commits or none.
func (e *Engine) createRun(ctx context.Context, tx store.Tx, wf store.Workflow, versionID string, input any, trigger string) (store.Run, error) {
	plan, err := e.planByVersionID(ctx, tx, versionID)
	if err != nil {
		return store.Run{}, err
	}
	data, err := json.Marshal(input)
	if err != nil {
		return store.Run{}, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	now := e.now().UTC()
	run := store.Run{ID: store.NewID("run"), ProjectID: wf.ProjectID, WorkflowID: wf.ID, VersionID: versionID, Status: store.RunPending,
		Trigger: trigger, Input: data, CreatedAt: now, UpdatedAt: now}
	if err := tx.CreateRun(ctx, run); err != nil {
		return store.Run{}, err
	}
	st := &runState{run: run, plan: plan, steps: map[string]*store.Step{}, input: input, outputs: map[string]any{}, dirty: map[string]bool{}}
	if err := e.advance(ctx, tx, st); err != nil {
		return store.Run{}, err
	}
	return st.run, nil
}
