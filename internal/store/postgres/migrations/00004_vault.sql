-- The secrets vault: its state, its keyring and its secrets. Nothing here is
-- plaintext: key terms are wrapped under the root key, which is never
-- stored in the database, and each secret's value is sealed under a data key
-- of its own, wrapped under a key term (see internal/vault).

-- +goose Up
CREATE TABLE vault_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    primary_term        BIGINT NOT NULL,
    min_decryption_term BIGINT NOT NULL,
    check_value         BYTEA NOT NULL, -- sealed under the root key
    kdf_salt            BYTEA,          -- Argon2id, when the root key comes from a passphrase
    kdf_time            BIGINT NOT NULL,
    kdf_memory          BIGINT NOT NULL,
    kdf_threads         BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE vault_keys (
    term       BIGINT PRIMARY KEY,
    wrapped    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row per secret: its current version only, so that a rotated
-- credential is gone rather than kept.
CREATE TABLE vault_secrets (
    id              TEXT PRIMARY KEY,
    environment     TEXT NOT NULL,
    name            TEXT NOT NULL,
    version         BIGINT NOT NULL,
    key_term        BIGINT NOT NULL,
    ciphertext      BYTEA NOT NULL,
    bindings        TEXT NOT NULL, -- JSON: connectors, hosts, models
    rotation_period BIGINT NOT NULL, -- microseconds; 0 for none
    block_expired   BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_used_at    BIGINT,
    UNIQUE (environment, name)
);

-- Rewrap walks the secrets below a term by id.
CREATE INDEX vault_secrets_term ON vault_secrets (key_term, id);

-- Which workflow in which environment has used a secret, so that a first
-- use raises an alert.
CREATE TABLE vault_secret_uses (
    secret_id     TEXT NOT NULL REFERENCES vault_secrets (id),
    workflow      TEXT NOT NULL,
    environment   TEXT NOT NULL,
    first_used_at BIGINT NOT NULL,
    PRIMARY KEY (secret_id, workflow, environment)
);

-- +goose Down
DROP TABLE vault_secret_uses;
DROP TABLE vault_secrets;
DROP TABLE vault_keys;
DROP TABLE vault_state;
