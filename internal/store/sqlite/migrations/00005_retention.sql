-- How long each kind of a run's payloads (input, steps, output) is kept,
-- and the digests of the subjects found in them, so that a person's runs
-- can be found and erased. The payloads themselves are sealed under keys
-- kept apart from this database (see internal/store/sqlite/keys_migrations).

-- +goose Up
CREATE TABLE run_retention (
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    keep_us    INTEGER NOT NULL, -- after the run finishes; 0 keeps it until erased
    expires_at INTEGER,          -- set when the run finishes
    purged_at  INTEGER,
    PRIMARY KEY (run_id, kind)
) STRICT;

CREATE INDEX run_retention_due ON run_retention (expires_at, run_id, kind)
    WHERE purged_at IS NULL AND expires_at IS NOT NULL;

CREATE TABLE run_subjects (
    digest BLOB NOT NULL, -- HMAC-SHA256 of a normalised identifier
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    PRIMARY KEY (digest, run_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX run_subjects_run ON run_subjects (run_id);

-- +goose Down
DROP TABLE run_subjects;
DROP TABLE run_retention;
