-- The tamper-evident audit log: records with the Merkle tree hashes each
-- one completes, signed checkpoints, and the secondary sinks' cursors.

-- +goose Up
-- seq is dense from 0. details is the canonical JSON the record was hashed
-- with; hashes holds its tlog stored hashes, 32 bytes each, leaf first.
CREATE TABLE audit_records (
    seq      INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    resource TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    details  TEXT NOT NULL,
    hashes   BLOB NOT NULL
) STRICT;

-- note is a sumdb note signing the tree of the first size records.
CREATE TABLE audit_checkpoints (
    size       INTEGER PRIMARY KEY,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_sink_cursors (
    sink TEXT PRIMARY KEY,
    next INTEGER NOT NULL
) STRICT;

-- One row that audit writers lock (an UPDATE) to append in turn.
CREATE TABLE audit_lock (
    id INTEGER PRIMARY KEY CHECK (id = 1)
) STRICT;
INSERT INTO audit_lock (id) VALUES (1);

-- +goose Down
DROP TABLE audit_lock;
DROP TABLE audit_sink_cursors;
DROP TABLE audit_checkpoints;
DROP TABLE audit_records;
