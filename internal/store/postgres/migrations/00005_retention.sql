-- How long each kind of a run's payloads (input, steps, output) is kept,
-- and the digests of the subjects found in them, so that a person's runs
-- can be found and erased. The payloads themselves are sealed under the
-- keys in run_keys: on Postgres in the same database, so a backup meant to
-- outlive a purge must leave that table out (pg_dump --exclude-table=run_keys).

-- +goose Up
CREATE TABLE run_retention (
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    keep_us    BIGINT NOT NULL, -- after the run finishes; 0 keeps it until erased
    expires_at BIGINT,          -- set when the run finishes
    purged_at  BIGINT,
    PRIMARY KEY (run_id, kind)
);

CREATE INDEX run_retention_due ON run_retention (expires_at, run_id, kind)
    WHERE purged_at IS NULL AND expires_at IS NOT NULL;

CREATE TABLE run_subjects (
    digest BYTEA NOT NULL, -- HMAC-SHA256 of a normalised identifier
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    PRIMARY KEY (digest, run_id)
);

CREATE INDEX run_subjects_run ON run_subjects (run_id);

-- A payload key per run and kind, wrapped under a vault key term. A
-- destroyed key keeps its row with wrapped NULL.
CREATE TABLE run_keys (
    run_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    term         BIGINT NOT NULL,
    wrapped      BYTEA,
    created_at   BIGINT NOT NULL,
    destroyed_at BIGINT,
    PRIMARY KEY (run_id, kind)
);

CREATE INDEX run_keys_term ON run_keys (term) WHERE wrapped IS NOT NULL;

-- +goose Down
DROP TABLE run_keys;
DROP TABLE run_subjects;
DROP TABLE run_retention;
