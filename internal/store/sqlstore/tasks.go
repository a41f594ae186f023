package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/store"
)

const (
	taskCols = `id, run_id, step_id, project_id, status, role, title, details, decided_by, comment,
		created_at, expires_at, decided_at`

	defaultTaskLimit = 100
	maxTaskLimit     = 500
)

var (
	stmtCreateTask = define(`INSERT INTO tasks (` + taskCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	stmtGetTask    = define(`SELECT ` + taskCols + ` FROM tasks WHERE id = ?`)
	stmtDecideTask = define(`UPDATE tasks SET status = ?, decided_by = ?, comment = ?, decided_at = ?
		WHERE id = ? AND status = '` + string(store.TaskPending) + `'
		RETURNING ` + taskCols)
	stmtTaskStatus = define(`SELECT status FROM tasks WHERE id = ?`)
	stmtTaskRun    = define(`SELECT run_id FROM tasks WHERE id = ?`)
	stmtListTasks  = defineListTasks()
)

// Bits of a ListTasks variant.
const (
	tasksByProject = 1 << iota
	tasksByRun
	tasksByStatus
	tasksVariants
)

func defineListTasks() [tasksVariants]stmt {
	var out [tasksVariants]stmt
	for mask := range tasksVariants {
		var where []string
		if mask&tasksByProject != 0 {
			where = append(where, `project_id = ?`)
		}
		if mask&tasksByRun != 0 {
			where = append(where, `run_id = ?`)
		}
		if mask&tasksByStatus != 0 {
			where = append(where, `status = ?`)
		}
		q := `SELECT ` + taskCols + ` FROM tasks`
		if len(where) > 0 {
			q += ` WHERE ` + strings.Join(where, ` AND `)
		}
		out[mask] = define(q + ` ORDER BY created_at, id LIMIT ?`)
	}
	return out
}

func scanTask(r scanner) (store.Task, error) {
	var t store.Task
	var created int64
	var expires, decided sql.NullInt64
	err := r.Scan(&t.ID, &t.RunID, &t.StepID, &t.ProjectID, &t.Status, &t.Role, &t.Title, &t.Details,
		&t.DecidedBy, &t.Comment, &created, &expires, &decided)
	t.CreatedAt, t.ExpiresAt, t.DecidedAt = fromMicros(created), fromNullMicros(expires), fromNullMicros(decided)
	return t, err
}

func (q *Queries) CreateTask(ctx context.Context, t store.Task) error {
	title, sealedTitle, err := q.sealText(ctx, taskField(t.RunID, t.ID, "title"), t.Title)
	if err != nil {
		return err
	}
	comment, sealedComment, err := q.sealText(ctx, taskField(t.RunID, t.ID, "comment"), t.Comment)
	if err != nil {
		return err
	}
	details, err := q.seal(ctx, taskField(t.RunID, t.ID, "details"), t.Details)
	if err != nil {
		return err
	}
	_, err = q.exec(ctx, stmtCreateTask, t.ID, t.RunID, t.StepID, t.ProjectID, t.Status, t.Role, title,
		blob(details.Bytes), t.DecidedBy, comment, micros(t.CreatedAt), nullMicros(t.ExpiresAt), nullMicros(t.DecidedAt))
	if err != nil {
		return q.fail(err, "create task %s", t.ID)
	}
	return q.noteSealed(ctx, t.RunID, sealedTitle, sealedComment, details)
}

func (q *Queries) GetTask(ctx context.Context, id string) (store.Task, error) {
	t, err := scanTask(q.queryRow(ctx, stmtGetTask, id))
	if err != nil {
		return store.Task{}, q.fail(err, "task %s", id)
	}
	return t, q.openTask(ctx, &t)
}

func (q *Queries) openTask(ctx context.Context, t *store.Task) error {
	var err error
	if t.Title, err = q.openText(ctx, taskField(t.RunID, t.ID, "title"), t.Title); err != nil {
		return err
	}
	if t.Comment, err = q.openText(ctx, taskField(t.RunID, t.ID, "comment"), t.Comment); err != nil {
		return err
	}
	t.Details, err = q.open(ctx, taskField(t.RunID, t.ID, "details"), t.Details)
	return err
}

func (q *Queries) ListTasks(ctx context.Context, f store.TaskFilter) ([]store.Task, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultTaskLimit
	}
	limit = min(limit, maxTaskLimit)

	var mask int
	var args []any
	if f.ProjectID != "" {
		mask |= tasksByProject
		args = append(args, f.ProjectID)
	}
	if f.RunID != "" {
		mask |= tasksByRun
		args = append(args, f.RunID)
	}
	if f.Status != "" {
		mask |= tasksByStatus
		args = append(args, f.Status)
	}
	args = append(args, limit)

	rows, err := q.query(ctx, stmtListTasks[mask], args...)
	if err != nil {
		return nil, q.fail(err, "list tasks")
	}
	tasks, err := collect(rows, scanTask)
	if err != nil {
		return nil, q.fail(err, "list tasks")
	}
	for i := range tasks {
		if err := q.openTask(ctx, &tasks[i]); err != nil {
			return nil, err
		}
	}
	return tasks, nil
}

func (q *Queries) DecideTask(ctx context.Context, id string, status store.TaskStatus, by, comment string, at time.Time) (store.Task, error) {
	if status == store.TaskPending || status == "" {
		return store.Task{}, fmt.Errorf("store: decide task %s: %q is not a decision", id, status)
	}
	var runID string
	if err := q.queryRow(ctx, stmtTaskRun, id).Scan(&runID); err != nil {
		return store.Task{}, q.fail(err, "decide task %s", id)
	}
	sealedComment, sealed, err := q.sealText(ctx, taskField(runID, id, "comment"), comment)
	if err != nil {
		return store.Task{}, err
	}
	t, err := scanTask(q.queryRow(ctx, stmtDecideTask, status, by, sealedComment, micros(at), id))
	if err == nil {
		if err := q.noteSealed(ctx, runID, sealed); err != nil {
			return store.Task{}, err
		}
		return t, q.openTask(ctx, &t)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return store.Task{}, q.fail(err, "decide task %s", id)
	}
	// Nothing matched: the task is either missing or already decided.
	var current store.TaskStatus
	if err := q.queryRow(ctx, stmtTaskStatus, id).Scan(&current); err != nil {
		return store.Task{}, q.fail(err, "decide task %s", id)
	}
	return store.Task{}, fmt.Errorf("store: decide task %s: task is already %s: %w", id, current, store.ErrConflict)
}
