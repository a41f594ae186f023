-- Times are unix microseconds (UTC). Payload columns hold opaque bytes that
-- will be encrypted per run. Tables are STRICT so a wrongly typed value fails
-- instead of being stored as something else.

-- +goose Up
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE workflows (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    name           TEXT NOT NULL,
    latest_version INTEGER NOT NULL DEFAULT 0,
    latest_id      TEXT NOT NULL DEFAULT '',
    webhook_path   TEXT NOT NULL DEFAULT '',
    schedule       TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (project_id, name)
) STRICT;

-- One workflow per webhook path; workflows without a webhook hold ''.
CREATE UNIQUE INDEX workflows_webhook_path ON workflows (webhook_path) WHERE webhook_path <> '';

CREATE TABLE workflow_versions (
    id          TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    number      INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    definition  BLOB,
    source      BLOB,
    created_at  INTEGER NOT NULL,
    UNIQUE (workflow_id, number)
) STRICT;

CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects (id),
    workflow_id  TEXT NOT NULL REFERENCES workflows (id),
    version_id   TEXT NOT NULL REFERENCES workflow_versions (id),
    status       TEXT NOT NULL,
    triggered_by TEXT NOT NULL DEFAULT '',
    input        BLOB,
    output       BLOB,
    error        TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER
) STRICT;

-- ListRuns pages newest first by (created_at, id), with or without a filter.
CREATE INDEX runs_workflow_created ON runs (workflow_id, created_at DESC, id DESC);
CREATE INDEX runs_project_created ON runs (project_id, created_at DESC, id DESC);
CREATE INDEX runs_status_created ON runs (status, created_at DESC, id DESC);
CREATE INDEX runs_created ON runs (created_at DESC, id DESC);

CREATE TABLE run_steps (
    seq         INTEGER PRIMARY KEY, -- order in which the run first reached the step
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id     TEXT NOT NULL,
    uses        TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    output      BLOB,
    next_steps  TEXT, -- JSON array of activated successors; NULL means all
    error       TEXT NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    started_at  INTEGER,
    finished_at INTEGER,
    updated_at  INTEGER NOT NULL,
    UNIQUE (run_id, step_id)
) STRICT;

CREATE TABLE step_attempts (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id         TEXT NOT NULL,
    number          INTEGER NOT NULL,
    status          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    error           TEXT NOT NULL DEFAULT '',
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    PRIMARY KEY (run_id, step_id, number)
) STRICT;

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id     TEXT NOT NULL,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    status      TEXT NOT NULL,
    role        TEXT NOT NULL DEFAULT '',
    title       TEXT NOT NULL,
    details     BLOB,
    decided_by  TEXT NOT NULL DEFAULT '',
    comment     TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    decided_at  INTEGER
) STRICT;

CREATE INDEX tasks_status_created ON tasks (status, created_at, id);
CREATE INDEX tasks_run ON tasks (run_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         BLOB NOT NULL UNIQUE, -- SHA-256 of the token; the lookup key
    role         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
) STRICT;

-- +goose Down
DROP TABLE api_tokens;
DROP TABLE tasks;
DROP TABLE step_attempts;
DROP TABLE run_steps;
DROP TABLE runs;
DROP TABLE workflow_versions;
DROP TABLE workflows;
DROP TABLE projects;
