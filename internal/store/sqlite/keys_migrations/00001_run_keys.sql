-- The payload keys of runs, in a file of their own beside the database, so
-- that a copy of the database holds none of them. A key is destroyed by
-- overwriting it (secure_delete is on and the WAL is truncated after each
-- destruction); its row stays with wrapped NULL.

-- +goose Up
CREATE TABLE run_keys (
    run_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    term         INTEGER NOT NULL,
    wrapped      BLOB,
    created_at   INTEGER NOT NULL,
    destroyed_at INTEGER,
    PRIMARY KEY (run_id, kind)
) STRICT;

CREATE INDEX run_keys_term ON run_keys (term) WHERE wrapped IS NOT NULL;

-- +goose Down
DROP TABLE run_keys;
