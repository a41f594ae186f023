package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/moatproject/moat/internal/store"
)

const (
	stepCols    = `run_id, step_id, uses, status, output, next_steps, error, attempts, started_at, finished_at, updated_at`
	attemptCols = `run_id, step_id, number, status, idempotency_key, error, started_at, finished_at`
)

var (
	stmtUpsertStep = define(`INSERT INTO run_steps (` + stepCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, step_id) DO UPDATE SET uses = excluded.uses, status = excluded.status,
			output = excluded.output, next_steps = excluded.next_steps, error = excluded.error, attempts = excluded.attempts,
			started_at = excluded.started_at, finished_at = excluded.finished_at, updated_at = excluded.updated_at`)
	stmtGetStep = define(`SELECT ` + stepCols + ` FROM run_steps WHERE run_id = ? AND step_id = ?`)
	// seq keeps the order in which a run first reached its steps.
	stmtListSteps = define(`SELECT ` + stepCols + ` FROM run_steps WHERE run_id = ? ORDER BY seq`)

	stmtUpsertAttempt = define(`INSERT INTO step_attempts (` + attemptCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run_id, step_id, number) DO UPDATE SET status = excluded.status,
			idempotency_key = excluded.idempotency_key, error = excluded.error,
			started_at = excluded.started_at, finished_at = excluded.finished_at`)
	stmtListAttempts = define(`SELECT ` + attemptCols + ` FROM step_attempts WHERE run_id = ?
		ORDER BY started_at, step_id, number`)
)

func scanStep(r scanner) (store.Step, error) {
	var s store.Step
	var updated int64
	var started, finished sql.NullInt64
	var next sql.NullString
	err := r.Scan(&s.RunID, &s.StepID, &s.Uses, &s.Status, &s.Output, &next, &s.Error, &s.Attempts,
		&started, &finished, &updated)
	if err == nil && next.Valid {
		err = json.Unmarshal([]byte(next.String), &s.Next)
		if s.Next == nil && err == nil {
			s.Next = []string{}
		}
	}
	s.StartedAt, s.FinishedAt, s.UpdatedAt = fromNullMicros(started), fromNullMicros(finished), fromMicros(updated)
	return s, err
}

func scanAttempt(r scanner) (store.Attempt, error) {
	var a store.Attempt
	var started int64
	var finished sql.NullInt64
	err := r.Scan(&a.RunID, &a.StepID, &a.Number, &a.Status, &a.IdempotencyKey, &a.Error, &started, &finished)
	a.StartedAt, a.FinishedAt = fromMicros(started), fromNullMicros(finished)
	return a, err
}

func (q *Queries) UpsertStep(ctx context.Context, s store.Step) error {
	var next sql.NullString
	if s.Next != nil {
		b, err := json.Marshal(s.Next)
		if err != nil {
			return q.fail(err, "upsert step %s/%s", s.RunID, s.StepID)
		}
		next = sql.NullString{String: string(b), Valid: true}
	}
	output, err := q.seal(ctx, stepField(s.RunID, s.StepID), s.Output)
	if err != nil {
		return err
	}
	_, err = q.exec(ctx, stmtUpsertStep, s.RunID, s.StepID, s.Uses, s.Status, blob(output.Bytes), next, s.Error, s.Attempts,
		nullMicros(s.StartedAt), nullMicros(s.FinishedAt), micros(s.UpdatedAt))
	if err != nil {
		return q.fail(err, "upsert step %s/%s", s.RunID, s.StepID)
	}
	return q.noteSealed(ctx, s.RunID, output)
}

func (q *Queries) GetStep(ctx context.Context, runID, stepID string) (store.Step, error) {
	s, err := scanStep(q.queryRow(ctx, stmtGetStep, runID, stepID))
	if err != nil {
		return store.Step{}, q.fail(err, "step %s/%s", runID, stepID)
	}
	s.Output, err = q.open(ctx, stepField(s.RunID, s.StepID), s.Output)
	return s, err
}

func (q *Queries) ListSteps(ctx context.Context, runID string) ([]store.Step, error) {
	rows, err := q.query(ctx, stmtListSteps, runID)
	if err != nil {
		return nil, q.fail(err, "list steps of run %s", runID)
	}
	steps, err := collect(rows, scanStep)
	if err != nil {
		return nil, q.fail(err, "list steps of run %s", runID)
	}
	for i := range steps {
		if steps[i].Output, err = q.open(ctx, stepField(runID, steps[i].StepID), steps[i].Output); err != nil {
			return nil, err
		}
	}
	return steps, nil
}

func (q *Queries) UpsertAttempt(ctx context.Context, a store.Attempt) error {
	_, err := q.exec(ctx, stmtUpsertAttempt, a.RunID, a.StepID, a.Number, a.Status, a.IdempotencyKey, a.Error,
		micros(a.StartedAt), nullMicros(a.FinishedAt))
	if err != nil {
		return q.fail(err, "upsert attempt %d of step %s/%s", a.Number, a.RunID, a.StepID)
	}
	return nil
}

func (q *Queries) ListAttempts(ctx context.Context, runID string) ([]store.Attempt, error) {
	rows, err := q.query(ctx, stmtListAttempts, runID)
	if err != nil {
		return nil, q.fail(err, "list attempts of run %s", runID)
	}
	attempts, err := collect(rows, scanAttempt)
	if err != nil {
		return nil, q.fail(err, "list attempts of run %s", runID)
	}
	return attempts, nil
}
