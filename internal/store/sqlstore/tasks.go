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
	_, err := q.exec(ctx, stmtCreateTask, t.ID, t.RunID, t.StepID, t.ProjectID, t.Status, t.Role, t.Title,
		blob(t.Details), t.DecidedBy, t.Comment, micros(t.CreatedAt), nullMicros(t.ExpiresAt), nullMicros(t.DecidedAt))
	if err != nil {
		return q.fail(err, "create task %s", t.ID)
	}
	return nil
}

func (q *Queries) GetTask(ctx context.Context, id string) (store.Task, error) {
	t, err := scanTask(q.queryRow(ctx, stmtGetTask, id))
	if err != nil {
		return store.Task{}, q.fail(err, "task %s", id)
	}
	return t, nil
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
	return tasks, nil
}

func (q *Queries) DecideTask(ctx context.Context, id string, status store.TaskStatus, by, comment string, at time.Time) (store.Task, error) {
	if status == store.TaskPending || status == "" {
		return store.Task{}, fmt.Errorf("store: decide task %s: %q is not a decision", id, status)
	}
	t, err := scanTask(q.queryRow(ctx, stmtDecideTask, status, by, comment, micros(at), id))
	if err == nil {
		return t, nil
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
