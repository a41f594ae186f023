package sqlstore

import (
	"context"

	"github.com/moatproject/moat/internal/store"
)

const projectCols = `id, name, description, created_at, updated_at`

var (
	// A project is identified by its name: upserting an existing name keeps
	// its id and creation time.
	stmtUpsertProject = define(`INSERT INTO projects (` + projectCols + `) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET description = excluded.description, updated_at = excluded.updated_at
		RETURNING ` + projectCols)
	stmtGetProject   = define(`SELECT ` + projectCols + ` FROM projects WHERE name = ?`)
	stmtListProjects = define(`SELECT ` + projectCols + ` FROM projects ORDER BY name`)
)

func scanProject(r scanner) (store.Project, error) {
	var p store.Project
	var created, updated int64
	err := r.Scan(&p.ID, &p.Name, &p.Description, &created, &updated)
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	return p, err
}

func (q *Queries) UpsertProject(ctx context.Context, p store.Project) (store.Project, error) {
	out, err := scanProject(q.queryRow(ctx, stmtUpsertProject,
		p.ID, p.Name, p.Description, micros(p.CreatedAt), micros(p.UpdatedAt)))
	if err != nil {
		return store.Project{}, q.fail(err, "upsert project %s", p.Name)
	}
	return out, nil
}

func (q *Queries) GetProject(ctx context.Context, name string) (store.Project, error) {
	p, err := scanProject(q.queryRow(ctx, stmtGetProject, name))
	if err != nil {
		return store.Project{}, q.fail(err, "project %s", name)
	}
	return p, nil
}

func (q *Queries) ListProjects(ctx context.Context) ([]store.Project, error) {
	rows, err := q.query(ctx, stmtListProjects)
	if err != nil {
		return nil, q.fail(err, "list projects")
	}
	ps, err := collect(rows, scanProject)
	if err != nil {
		return nil, q.fail(err, "list projects")
	}
	return ps, nil
}
