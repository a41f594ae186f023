package store

import (
	"context"
	"time"
)

// SecretQueries hold the vault's rows: its state, its keyring and the
// secrets. The store sees only ciphertext and wrapped keys; what they mean
// is the vault's business (internal/vault).
type SecretQueries interface {
	// InitVault stores the vault's first state and its first key term. It
	// fails with ErrConflict when the vault is already initialised, so two
	// nodes starting at once initialise it once.
	InitVault(ctx context.Context, st VaultState, first VaultKey) error
	// GetVaultState fails with ErrNotFound before InitVault.
	GetVaultState(ctx context.Context) (VaultState, error)
	// LockVaultState returns the state and, inside a transaction, holds a
	// write lock on it until the transaction ends, so that writers which
	// depend on the keyring (a new secret version, a rewrap, a rotation, a
	// retirement) run one after another.
	LockVaultState(ctx context.Context) (VaultState, error)
	// UpdateVaultState writes PrimaryTerm, MinDecryptionTerm and UpdatedAt.
	UpdateVaultState(ctx context.Context, st VaultState) error
	// AddVaultKey adds a key term (ErrConflict when the term exists).
	AddVaultKey(ctx context.Context, k VaultKey) error
	// ListVaultKeys lists the key terms, lowest first.
	ListVaultKeys(ctx context.Context) ([]VaultKey, error)
	// DeleteVaultKeysBelow deletes the key terms below term and reports how
	// many it deleted.
	DeleteVaultKeysBelow(ctx context.Context, term uint32) (int, error)

	// CreateSecret adds a secret (ErrConflict when its environment already
	// has one of that name, or its id is taken).
	CreateSecret(ctx context.Context, s Secret) error
	// ReplaceSecret stores a new version of a secret: every column but ID,
	// Environment, Name, CreatedAt and LastUsedAt. It fails with
	// ErrConflict unless the stored version is s.Version-1, so that two
	// writers never both think they stored the next version.
	ReplaceSecret(ctx context.Context, s Secret) error
	// GetSecret returns a secret with its ciphertext.
	GetSecret(ctx context.Context, environment, name string) (Secret, error)
	// ListSecrets lists the secrets of an environment, or of all when
	// environment is "", by environment then name, without ciphertext.
	ListSecrets(ctx context.Context, environment string) ([]Secret, error)
	// DeleteSecret deletes a secret and its recorded uses (ErrNotFound when
	// there is none).
	DeleteSecret(ctx context.Context, environment, name string) error
	// CountSecretsByTerm counts secrets per key term.
	CountSecretsByTerm(ctx context.Context) (map[uint32]int, error)
	// ListSecretsBelowTerm returns up to limit secrets (with ciphertext)
	// whose key term is below term and whose id sorts after afterID,
	// ordered by id.
	ListSecretsBelowTerm(ctx context.Context, term uint32, afterID string, limit int) ([]Secret, error)
	// RewrapSecret replaces the ciphertext of one version of a secret
	// wrapped under fromTerm by one wrapped under toTerm. It reports false,
	// changing nothing, when that version under that term is no longer
	// stored (a new version was set, or it was rewrapped already).
	RewrapSecret(ctx context.Context, id string, version int, fromTerm, toTerm uint32, ciphertext []byte) (bool, error)
	// TouchSecret sets a secret's last use.
	TouchSecret(ctx context.Context, id string, at time.Time) error
	// RecordSecretUse records that a workflow in an environment used a
	// secret, reporting first=true when that pair had never used it.
	RecordSecretUse(ctx context.Context, u SecretUse) (first bool, err error)
}

// VaultState is the vault's one row of state.
type VaultState struct {
	PrimaryTerm       uint32
	MinDecryptionTerm uint32
	// Check is a value sealed under the root key, so that a wrong root key
	// (or passphrase) is told apart from corrupt data.
	Check []byte
	// KDF holds the passphrase derivation's parameters; zero when the root
	// key comes from elsewhere.
	KDF       KDFParams
	CreatedAt time.Time
	UpdatedAt time.Time
}

// KDFParams are Argon2id's parameters and salt.
type KDFParams struct {
	Salt      []byte
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// VaultKey is one key term, wrapped under the root key.
type VaultKey struct {
	Term      uint32
	Wrapped   []byte
	CreatedAt time.Time
}

// Secret is one secret as stored: its current version only. Ciphertext is
// the vault's envelope; nothing here is plaintext.
type Secret struct {
	ID             string
	Environment    string
	Name           string
	Version        int
	KeyTerm        uint32
	Ciphertext     []byte
	Bindings       SecretBindings
	RotationPeriod time.Duration // 0: no rotation period
	BlockExpired   bool
	CreatedAt      time.Time
	UpdatedAt      time.Time // when the current version was set
	LastUsedAt     *time.Time
}

// SecretBindings are where a secret may be sent.
type SecretBindings struct {
	Connectors []string `json:"connectors,omitempty"`
	Hosts      []string `json:"hosts,omitempty"`
	Models     []string `json:"models,omitempty"`
}

// SecretUse is a (secret, workflow, environment) that resolved a secret.
type SecretUse struct {
	SecretID    string
	Workflow    string
	Environment string
	At          time.Time
}
