package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/moatproject/moat/internal/store"
)

const (
	workflowCols = `w.id, w.project_id, p.name, w.name, w.latest_version, w.latest_id, w.webhook_path, w.schedule, w.created_at, w.updated_at`
	workflowFrom = ` FROM workflows w JOIN projects p ON p.id = w.project_id`
	versionCols  = `id, workflow_id, number, hash, definition, source, created_at`
)

var (
	stmtGetWorkflow        = define(`SELECT ` + workflowCols + workflowFrom + ` WHERE p.name = ? AND w.name = ?`)
	stmtGetWorkflowByID    = define(`SELECT ` + workflowCols + workflowFrom + ` WHERE w.id = ?`)
	stmtListWorkflows      = define(`SELECT ` + workflowCols + workflowFrom + ` WHERE p.name = ? ORDER BY w.name`)
	stmtListAllWorkflows   = define(`SELECT ` + workflowCols + workflowFrom + ` ORDER BY p.name, w.name`)
	stmtFindWebhook        = define(`SELECT ` + workflowCols + workflowFrom + ` WHERE w.webhook_path = ?`)
	stmtGetVersion         = define(`SELECT ` + versionCols + ` FROM workflow_versions WHERE id = ?`)
	stmtGetVersionByNumber = define(`SELECT ` + versionCols + ` FROM workflow_versions WHERE workflow_id = ? AND number = ?`)
	stmtListVersions       = define(`SELECT ` + versionCols + ` FROM workflow_versions WHERE workflow_id = ? ORDER BY number`)

	stmtWebhookHolder = define(`SELECT p.name, w.name` + workflowFrom + `
		WHERE w.webhook_path = ? AND NOT (p.name = ? AND w.name = ?)`)
	stmtEnsureProject = define(`INSERT INTO projects (id, name, description, created_at, updated_at) VALUES (?, ?, '', ?, ?)
		ON CONFLICT (name) DO NOTHING`)
	stmtProjectID = define(`SELECT id FROM projects WHERE name = ?`)
	// The no-op update on conflict returns the existing row and, on Postgres,
	// locks it, so concurrent saves of one workflow number versions in turn.
	stmtEnsureWorkflow = define(`INSERT INTO workflows (id, project_id, name, latest_version, latest_id, webhook_path, schedule, created_at, updated_at)
		VALUES (?, ?, ?, 0, '', '', '', ?, ?)
		ON CONFLICT (project_id, name) DO UPDATE SET name = excluded.name
		RETURNING id, project_id, name, latest_version, latest_id, webhook_path, schedule, created_at, updated_at`)
	stmtInsertVersion = define(`INSERT INTO workflow_versions (` + versionCols + `) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	stmtSetLatest     = define(`UPDATE workflows SET latest_version = ?, latest_id = ?, webhook_path = ?, schedule = ?, updated_at = ? WHERE id = ?`)
)

func scanWorkflow(r scanner) (store.Workflow, error) {
	var w store.Workflow
	var created, updated int64
	err := r.Scan(&w.ID, &w.ProjectID, &w.Project, &w.Name, &w.LatestVersion, &w.LatestID,
		&w.WebhookPath, &w.Schedule, &created, &updated)
	w.CreatedAt, w.UpdatedAt = fromMicros(created), fromMicros(updated)
	return w, err
}

func scanVersion(r scanner) (store.Version, error) {
	var v store.Version
	var created int64
	err := r.Scan(&v.ID, &v.WorkflowID, &v.Number, &v.Hash, &v.Definition, &v.Source, &created)
	v.CreatedAt = fromMicros(created)
	return v, err
}

func (q *Queries) SaveWorkflowVersion(ctx context.Context, nv store.NewVersion) (store.Workflow, store.Version, bool, error) {
	wf, ver, created, err := q.saveWorkflowVersion(ctx, nv)
	if err != nil {
		return store.Workflow{}, store.Version{}, false, q.fail(err, "save workflow %s/%s", nv.Project, nv.Name)
	}
	return wf, ver, created, nil
}

func (q *Queries) saveWorkflowVersion(ctx context.Context, nv store.NewVersion) (store.Workflow, store.Version, bool, error) {
	var wf store.Workflow
	var ver store.Version
	at := micros(nv.At)

	// Check the webhook path before writing anything, so a refused save
	// leaves no trace even inside a caller's transaction that goes on.
	if nv.WebhookPath != "" {
		var project, name string
		err := q.queryRow(ctx, stmtWebhookHolder, nv.WebhookPath, nv.Project, nv.Name).Scan(&project, &name)
		if err == nil {
			return wf, ver, false, fmt.Errorf("webhook path %q is already used by workflow %s/%s: %w",
				nv.WebhookPath, project, name, store.ErrConflict)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return wf, ver, false, fmt.Errorf("check webhook path: %w", err)
		}
	}

	if _, err := q.exec(ctx, stmtEnsureProject, store.NewID("prj"), nv.Project, at, at); err != nil {
		return wf, ver, false, fmt.Errorf("create project: %w", err)
	}
	var projectID string
	if err := q.queryRow(ctx, stmtProjectID, nv.Project).Scan(&projectID); err != nil {
		return wf, ver, false, fmt.Errorf("read project: %w", err)
	}

	var created, updated int64
	err := q.queryRow(ctx, stmtEnsureWorkflow, store.NewID("wf"), projectID, nv.Name, at, at).Scan(
		&wf.ID, &wf.ProjectID, &wf.Name, &wf.LatestVersion, &wf.LatestID, &wf.WebhookPath, &wf.Schedule, &created, &updated)
	if err != nil {
		return wf, ver, false, fmt.Errorf("create workflow: %w", err)
	}
	wf.Project, wf.CreatedAt, wf.UpdatedAt = nv.Project, fromMicros(created), fromMicros(updated)

	if wf.LatestID != "" {
		latest, err := scanVersion(q.queryRow(ctx, stmtGetVersion, wf.LatestID))
		if err != nil {
			return wf, ver, false, fmt.Errorf("read latest version: %w", err)
		}
		if latest.Hash == nv.Hash {
			return wf, latest, false, nil
		}
	}

	ver = store.Version{
		ID:         store.NewID("ver"),
		WorkflowID: wf.ID,
		Number:     wf.LatestVersion + 1,
		Hash:       nv.Hash,
		Definition: nv.Definition,
		Source:     nv.Source,
		CreatedAt:  fromMicros(at),
	}
	if _, err := q.exec(ctx, stmtInsertVersion, ver.ID, ver.WorkflowID, ver.Number, ver.Hash,
		blob(ver.Definition), blob(ver.Source), at); err != nil {
		return wf, ver, false, fmt.Errorf("insert version %d: %w", ver.Number, err)
	}
	if _, err := q.exec(ctx, stmtSetLatest, ver.Number, ver.ID, nv.WebhookPath, nv.Schedule, at, wf.ID); err != nil {
		return wf, ver, false, fmt.Errorf("update workflow: %w", err)
	}
	wf.LatestVersion, wf.LatestID, wf.WebhookPath, wf.Schedule, wf.UpdatedAt = ver.Number, ver.ID, nv.WebhookPath, nv.Schedule, ver.CreatedAt
	return wf, ver, true, nil
}

func (q *Queries) GetWorkflow(ctx context.Context, project, name string) (store.Workflow, error) {
	w, err := scanWorkflow(q.queryRow(ctx, stmtGetWorkflow, project, name))
	if err != nil {
		return store.Workflow{}, q.fail(err, "workflow %s/%s", project, name)
	}
	return w, nil
}

func (q *Queries) GetWorkflowByID(ctx context.Context, id string) (store.Workflow, error) {
	w, err := scanWorkflow(q.queryRow(ctx, stmtGetWorkflowByID, id))
	if err != nil {
		return store.Workflow{}, q.fail(err, "workflow %s", id)
	}
	return w, nil
}

// ListWorkflows lists a project's workflows by name, or every workflow when
// project is empty.
func (q *Queries) ListWorkflows(ctx context.Context, project string) ([]store.Workflow, error) {
	var rows *sql.Rows
	var err error
	if project == "" {
		rows, err = q.query(ctx, stmtListAllWorkflows)
	} else {
		rows, err = q.query(ctx, stmtListWorkflows, project)
	}
	if err != nil {
		return nil, q.fail(err, "list workflows of %q", project)
	}
	ws, err := collect(rows, scanWorkflow)
	if err != nil {
		return nil, q.fail(err, "list workflows of %q", project)
	}
	return ws, nil
}

func (q *Queries) GetVersion(ctx context.Context, id string) (store.Version, error) {
	v, err := scanVersion(q.queryRow(ctx, stmtGetVersion, id))
	if err != nil {
		return store.Version{}, q.fail(err, "workflow version %s", id)
	}
	return v, nil
}

func (q *Queries) GetVersionByNumber(ctx context.Context, workflowID string, number int) (store.Version, error) {
	v, err := scanVersion(q.queryRow(ctx, stmtGetVersionByNumber, workflowID, number))
	if err != nil {
		return store.Version{}, q.fail(err, "workflow %s version %d", workflowID, number)
	}
	return v, nil
}

// ListVersions lists a workflow's versions, oldest (number 1) first.
func (q *Queries) ListVersions(ctx context.Context, workflowID string) ([]store.Version, error) {
	rows, err := q.query(ctx, stmtListVersions, workflowID)
	if err != nil {
		return nil, q.fail(err, "list versions of workflow %s", workflowID)
	}
	vs, err := collect(rows, scanVersion)
	if err != nil {
		return nil, q.fail(err, "list versions of workflow %s", workflowID)
	}
	return vs, nil
}

func (q *Queries) FindWebhook(ctx context.Context, path string) (store.Workflow, error) {
	if path == "" {
		// Workflows without a webhook all hold the empty path.
		return store.Workflow{}, q.fail(sql.ErrNoRows, "webhook %q", path)
	}
	w, err := scanWorkflow(q.queryRow(ctx, stmtFindWebhook, path))
	if err != nil {
		return store.Workflow{}, q.fail(err, "webhook %q", path)
	}
	return w, nil
}
