package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/riverqueue/river"

	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// defaultStepTimeout bounds one attempt of an effect whose step sets none.
const defaultStepTimeout = 10 * time.Minute

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
		started time.Time // when this attempt first began, across crashes
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
		now := e.now()
		key := IdempotencyKey(args.RunID, args.StepID, args.Attempt)
		started = now
		if s.Attempts >= args.Attempt {
			// Run again after a crash: the attempt keeps its start.
			prior, err := tx.ListAttempts(ctx, args.RunID)
			if err != nil {
				return err
			}
			for _, a := range prior {
				if a.StepID == args.StepID && a.Number == args.Attempt {
					started = a.StartedAt
				}
			}
		} else {
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
		call = &nodes.Call{Plan: st.plan, Step: ps, With: with, Vars: vars, IdempotencyKey: key, Attempt: args.Attempt, RunID: args.RunID, Env: &e.env}
		return nil
	})
	if err != nil || done {
		return err
	}
	e.changed(args.RunID)

	res, execErr := e.runGuarded(ctx, exec, call, timeout)
	if ctx.Err() != nil {
		// Shutting down: leave the attempt open; it runs again with the same
		// idempotency key after restart.
		return ctx.Err()
	}
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return e.store.InTx(commitCtx, func(tx store.Tx) error {
		return e.recordAttempt(commitCtx, tx, job, call, started, res, execErr)
	})
}

// runGuarded runs one attempt under the step's timeout. A panicking node
// fails its step, not the process; the stack goes to the log, not into the
// run's record.
func (e *Engine) runGuarded(ctx context.Context, exec nodes.Executor, call *nodes.Call, timeout time.Duration) (res nodes.Result, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("node panicked", "node", call.Step.Uses, "step", call.Step.ID, "stack", string(debug.Stack()))
			err = nodes.Permanent(fmt.Errorf("node %s failed unexpectedly (a bug in Moat; see the server log)", call.Step.Uses))
		}
	}()
	res, err = exec.Execute(ctx, call)
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("step timed out after %s: %w", timeout, err)
	}
	return res, err
}

func (e *Engine) recordAttempt(ctx context.Context, tx store.Tx, job *river.Job[StepArgs], call *nodes.Call, started time.Time, res nodes.Result, execErr error) error {
	args := job.Args
	now := e.now()
	attempt := store.Attempt{RunID: args.RunID, StepID: args.StepID, Number: args.Attempt, Status: store.AttemptSucceeded,
		IdempotencyKey: call.IdempotencyKey, StartedAt: started, FinishedAt: &now}
	if execErr != nil {
		attempt.Status, attempt.Error = store.AttemptFailed, execErr.Error()
	}
	st, err := e.loadState(ctx, tx, args.RunID)
	if err != nil {
		return err
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
