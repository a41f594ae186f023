package engine

import (
	"context"
	"errors"
	"time"

	"github.com/riverqueue/river"

	"github.com/moatproject/moat/internal/store"
)

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
		_, err := tx.DecideTask(ctx, job.Args.TaskID, store.TaskExpired, "moat", "no decision before the deadline", e.now())
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
		"decidedAt": e.now().Format(time.RFC3339Nano)}
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
