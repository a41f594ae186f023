package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"

	"github.com/moatproject/moat/internal/store"
)

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
