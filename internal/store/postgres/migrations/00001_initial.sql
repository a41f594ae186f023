-- Times are unix microseconds (UTC), as on SQLite, so both stores share their
-- queries. Payload columns hold opaque bytes that will be encrypted per run.

-- +goose Up
CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE workflows (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id),
    name           TEXT NOT NULL,
    latest_version INTEGER NOT NULL DEFAULT 0,
    latest_id      TEXT NOT NULL DEFAULT '',
    webhook_path   TEXT NOT NULL DEFAULT '',
    schedule       TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

-- One workflow per webhook path; workflows without a webhook hold ''.
CREATE UNIQUE INDEX workflows_webhook_path ON workflows (webhook_path) WHERE webhook_path <> '';

CREATE TABLE workflow_versions (
    id          TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    number      INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    definition  BYTEA,
    source      BYTEA,
    created_at  BIGINT NOT NULL,
    UNIQUE (workflow_id, number)
);

CREATE TABLE runs (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects (id),
    workflow_id  TEXT NOT NULL REFERENCES workflows (id),
    version_id   TEXT NOT NULL REFERENCES workflow_versions (id),
    status       TEXT NOT NULL,
    triggered_by TEXT NOT NULL DEFAULT '',
    input        BYTEA,
    output       BYTEA,
    error        TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    started_at   BIGINT,
    finished_at  BIGINT
);

-- ListRuns pages newest first by (created_at, id), with or without a filter.
CREATE INDEX runs_workflow_created ON runs (workflow_id, created_at DESC, id DESC);
CREATE INDEX runs_project_created ON runs (project_id, created_at DESC, id DESC);
CREATE INDEX runs_status_created ON runs (status, created_at DESC, id DESC);
CREATE INDEX runs_created ON runs (created_at DESC, id DESC);

CREATE TABLE run_steps (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- order in which the run first reached the step
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id     TEXT NOT NULL,
    uses        TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    output      BYTEA,
    next_steps  TEXT, -- JSON array of activated successors; NULL means all
    error       TEXT NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    started_at  BIGINT,
    finished_at BIGINT,
    updated_at  BIGINT NOT NULL,
    UNIQUE (run_id, step_id)
);

CREATE TABLE step_attempts (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id         TEXT NOT NULL,
    number          INTEGER NOT NULL,
    status          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    error           TEXT NOT NULL DEFAULT '',
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    PRIMARY KEY (run_id, step_id, number)
);

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id     TEXT NOT NULL,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    status      TEXT NOT NULL,
    role        TEXT NOT NULL DEFAULT '',
    title       TEXT NOT NULL,
    details     BYTEA,
    decided_by  TEXT NOT NULL DEFAULT '',
    comment     TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    decided_at  BIGINT
);

CREATE INDEX tasks_status_created ON tasks (status, created_at, id);
CREATE INDEX tasks_run ON tasks (run_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    hash         BYTEA NOT NULL UNIQUE, -- SHA-256 of the token; the lookup key
    role         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

-- +goose Down
DROP TABLE api_tokens;
DROP TABLE tasks;
DROP TABLE step_attempts;
DROP TABLE run_steps;
DROP TABLE runs;
DROP TABLE workflow_versions;
DROP TABLE workflows;
DROP TABLE projects;
