-- The secrets vault: its state, its keyring and its secrets. Nothing here is
-- plaintext: key terms are wrapped under the root key, which is never
-- stored in the database, and each secret's value is sealed under a data key
-- of its own, wrapped under a key term (see internal/vault).

-- +goose Up
CREATE TABLE vault_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    primary_term        INTEGER NOT NULL,
    min_decryption_term INTEGER NOT NULL,
    check_value         BLOB NOT NULL, -- sealed under the root key
    kdf_salt            BLOB,          -- Argon2id, when the root key comes from a passphrase
    kdf_time            INTEGER NOT NULL,
    kdf_memory          INTEGER NOT NULL,
    kdf_threads         INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;

CREATE TABLE vault_keys (
    term       INTEGER PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- One row per secret: its current version only, so that a rotated
-- credential is gone rather than kept.
CREATE TABLE vault_secrets (
    id              TEXT PRIMARY KEY,
    environment     TEXT NOT NULL,
    name            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    key_term        INTEGER NOT NULL,
    ciphertext      BLOB NOT NULL,
    bindings        TEXT NOT NULL, -- JSON: connectors, hosts, models
    rotation_period INTEGER NOT NULL, -- microseconds; 0 for none
    block_expired   INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    UNIQUE (environment, name)
) STRICT;

-- Rewrap walks the secrets below a term by id.
CREATE INDEX vault_secrets_term ON vault_secrets (key_term, id);

-- Which workflow in which environment has used a secret, so that a first
-- use raises an alert.
CREATE TABLE vault_secret_uses (
    secret_id     TEXT NOT NULL REFERENCES vault_secrets (id),
    workflow      TEXT NOT NULL,
    environment   TEXT NOT NULL,
    first_used_at INTEGER NOT NULL,
    PRIMARY KEY (secret_id, workflow, environment)
) STRICT;

-- +goose Down
DROP TABLE vault_secret_uses;
DROP TABLE vault_secrets;
DROP TABLE vault_keys;
DROP TABLE vault_state;
