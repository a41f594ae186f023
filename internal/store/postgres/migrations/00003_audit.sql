-- The tamper-evident audit log: records with the Merkle tree hashes each
-- one completes, signed checkpoints, and the secondary sinks' cursors.

-- +goose Up
-- seq is dense from 0. details is the canonical JSON the record was hashed
-- with; hashes holds its tlog stored hashes, 32 bytes each, leaf first.
CREATE TABLE audit_records (
    seq      BIGINT PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    resource TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    details  TEXT NOT NULL,
    hashes   BYTEA NOT NULL
);

-- note is a sumdb note signing the tree of the first size records.
CREATE TABLE audit_checkpoints (
    size       BIGINT PRIMARY KEY,
    note       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_sink_cursors (
    sink TEXT PRIMARY KEY,
    next BIGINT NOT NULL
);

-- One row that audit writers lock (an UPDATE) to append in turn.
CREATE TABLE audit_lock (
    id INTEGER PRIMARY KEY CHECK (id = 1)
);
INSERT INTO audit_lock (id) VALUES (1);

-- +goose Down
DROP TABLE audit_lock;
DROP TABLE audit_sink_cursors;
DROP TABLE audit_checkpoints;
DROP TABLE audit_records;
