-- The gateway's resources (Vendor, Connector, Model) and the tokens the
-- gateway issues within a run.

-- +goose Up
CREATE TABLE resources (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL, -- canonical JSON of the resource
    hash       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- No foreign key to runs, so that calls belonging to no run (an API key's)
-- can keep tokens too; whatever deletes a run must delete its tokens.
CREATE TABLE run_tokens (
    run_id     TEXT NOT NULL,
    token      TEXT NOT NULL,
    class      TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, token)
);

-- One token per value within a run.
CREATE UNIQUE INDEX run_tokens_value ON run_tokens (run_id, class, value);

-- +goose Down
DROP TABLE run_tokens;
DROP TABLE resources;
