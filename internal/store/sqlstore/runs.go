package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/moatproject/moat/internal/store"
)

const (
	runCols = `id, project_id, workflow_id, version_id, status, triggered_by, input, output, error,
		created_at, updated_at, started_at, finished_at`

	defaultRunLimit = 50
	maxRunLimit     = 500
)

// finalRunStatuses is the SQL list of statuses UpdateRun must not leave.
var finalRunStatuses = fmt.Sprintf(`('%s', '%s', '%s')`, store.RunSucceeded, store.RunFailed, store.RunCancelled)

var (
	stmtCreateRun = define(`INSERT INTO runs (` + runCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	stmtGetRun    = define(`SELECT ` + runCols + ` FROM runs WHERE id = ?`)
	stmtUpdateRun = define(`UPDATE runs SET status = ?, output = ?, error = ?, started_at = ?, finished_at = ?, updated_at = ?
		WHERE id = ? AND status NOT IN ` + finalRunStatuses)
	stmtRunStatus = define(`SELECT status FROM runs WHERE id = ?`)
	stmtListRuns  = defineListRuns()
)

// Bits of a ListRuns variant: which optional conditions it has.
const (
	runsByProject = 1 << iota
	runsByWorkflow
	runsByStatus
	runsAfterCursor
	runsVariants
)

// defineListRuns defines one statement per combination of filters, so that
// each is planned against the index it can use.
func defineListRuns() [runsVariants]stmt {
	var out [runsVariants]stmt
	for mask := range runsVariants {
		var where []string
		if mask&runsByProject != 0 {
			where = append(where, `project_id = ?`)
		}
		if mask&runsByWorkflow != 0 {
			where = append(where, `workflow_id = ?`)
		}
		if mask&runsByStatus != 0 {
			where = append(where, `status = ?`)
		}
		if mask&runsAfterCursor != 0 {
			where = append(where, `(created_at, id) < (?, ?)`)
		}
		q := `SELECT ` + runCols + ` FROM runs`
		if len(where) > 0 {
			q += ` WHERE ` + strings.Join(where, ` AND `)
		}
		out[mask] = define(q + ` ORDER BY created_at DESC, id DESC LIMIT ?`)
	}
	return out
}

func scanRun(r scanner) (store.Run, error) {
	var run store.Run
	var created, updated int64
	var started, finished sql.NullInt64
	err := r.Scan(&run.ID, &run.ProjectID, &run.WorkflowID, &run.VersionID, &run.Status, &run.Trigger,
		&run.Input, &run.Output, &run.Error, &created, &updated, &started, &finished)
	run.CreatedAt, run.UpdatedAt = fromMicros(created), fromMicros(updated)
	run.StartedAt, run.FinishedAt = fromNullMicros(started), fromNullMicros(finished)
	return run, err
}

func (q *Queries) CreateRun(ctx context.Context, r store.Run) error {
	input, err := q.seal(ctx, inputField(r.ID), r.Input)
	if err != nil {
		return err
	}
	output, err := q.seal(ctx, outputField(r.ID), r.Output)
	if err != nil {
		return err
	}
	_, err = q.exec(ctx, stmtCreateRun, r.ID, r.ProjectID, r.WorkflowID, r.VersionID, r.Status, r.Trigger,
		blob(input.Bytes), blob(output.Bytes), r.Error, micros(r.CreatedAt), micros(r.UpdatedAt),
		nullMicros(r.StartedAt), nullMicros(r.FinishedAt))
	if err != nil {
		return q.fail(err, "create run %s", r.ID)
	}
	if err := q.insertRetention(ctx, r.ID, r.Retention); err != nil {
		return err
	}
	return q.noteSealed(ctx, r.ID, input, output)
}

func (q *Queries) GetRun(ctx context.Context, id string) (store.Run, error) {
	r, err := scanRun(q.queryRow(ctx, stmtGetRun, id))
	if err != nil {
		return store.Run{}, q.fail(err, "run %s", id)
	}
	return r, q.openRun(ctx, &r)
}

func (q *Queries) openRun(ctx context.Context, r *store.Run) error {
	var err error
	if r.Input, err = q.open(ctx, inputField(r.ID), r.Input); err != nil {
		return err
	}
	r.Output, err = q.open(ctx, outputField(r.ID), r.Output)
	return err
}

func (q *Queries) UpdateRun(ctx context.Context, r store.Run) error {
	output, err := q.seal(ctx, outputField(r.ID), r.Output)
	if err != nil {
		return err
	}
	res, err := q.exec(ctx, stmtUpdateRun, r.Status, blob(output.Bytes), r.Error,
		nullMicros(r.StartedAt), nullMicros(r.FinishedAt), micros(r.UpdatedAt), r.ID)
	if err != nil {
		return q.fail(err, "update run %s", r.ID)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return q.fail(err, "update run %s", r.ID)
	}
	if n == 1 {
		if err := q.noteSealed(ctx, r.ID, output); err != nil {
			return err
		}
		if r.Status.Final() && r.FinishedAt != nil {
			// The retention clock starts when the run finishes.
			if _, err := q.exec(ctx, stmtExpireRetention, micros(*r.FinishedAt), r.ID); err != nil {
				return q.fail(err, "update run %s", r.ID)
			}
		}
		return nil
	}
	// Nothing matched: the run is either missing or already final.
	var status store.RunStatus
	if err := q.queryRow(ctx, stmtRunStatus, r.ID).Scan(&status); err != nil {
		return q.fail(err, "update run %s", r.ID)
	}
	return fmt.Errorf("store: update run %s: run is already %s: %w", r.ID, status, store.ErrConflict)
}

func (q *Queries) ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultRunLimit
	}
	limit = min(limit, maxRunLimit)

	var mask int
	var args []any
	if f.ProjectID != "" {
		mask |= runsByProject
		args = append(args, f.ProjectID)
	}
	if f.WorkflowID != "" {
		mask |= runsByWorkflow
		args = append(args, f.WorkflowID)
	}
	if f.Status != "" {
		mask |= runsByStatus
		args = append(args, f.Status)
	}
	if f.Cursor != "" {
		created, id, err := decodeRunCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("store: list runs: %w", err)
		}
		mask |= runsAfterCursor
		args = append(args, created, id)
	}
	// One row more than asked tells whether another page exists.
	args = append(args, limit+1)

	rows, err := q.query(ctx, stmtListRuns[mask], args...)
	if err != nil {
		return nil, "", q.fail(err, "list runs")
	}
	runs, err := collect(rows, scanRun)
	if err != nil {
		return nil, "", q.fail(err, "list runs")
	}
	for i := range runs {
		if err := q.openRun(ctx, &runs[i]); err != nil {
			return nil, "", err
		}
	}
	if len(runs) <= limit {
		return runs, "", nil
	}
	runs = runs[:limit]
	last := runs[limit-1]
	return runs, encodeRunCursor(micros(last.CreatedAt), last.ID), nil
}

// A run cursor is the sort key of the last run of a page: creation time in
// microseconds and id.
func encodeRunCursor(created int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created, 10) + ":" + id))
}

var errBadCursor = fmt.Errorf("%w: malformed cursor; pass nextCursor from a previous page", store.ErrInvalid)

func decodeRunCursor(cursor string) (int64, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, "", errBadCursor
	}
	created, id, ok := strings.Cut(string(raw), ":")
	if !ok || id == "" {
		return 0, "", errBadCursor
	}
	micro, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		return 0, "", errBadCursor
	}
	return micro, id, nil
}
