package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/robfig/cron/v3"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/workflow"
)

// ScheduleArgs is the next tick of a scheduled workflow version.
type ScheduleArgs struct {
	WorkflowID string    `json:"workflow"`
	VersionID  string    `json:"version"`
	NotBefore  time.Time `json:"notBefore,omitzero"`
}

func (ScheduleArgs) Kind() string { return "moat.schedule" }

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
			run, err := e.createRun(ctx, tx, store.NewID("run"), wf, job.Args.VersionID, input, "schedule")
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
