package vault

import "errors"

// Sentinel errors. Every error the vault returns wraps one of them, and none
// carries a secret's value, a key or a passphrase.
var (
	// ErrSealed: the vault holds no keys; unseal it first.
	ErrSealed = errors.New("vault: sealed")
	// ErrNotInitialized: a passphrase vault whose keyring was never
	// created; Init it.
	ErrNotInitialized = errors.New("vault: not initialised")
	// ErrAlreadyInitialized: Init on a vault that has a keyring.
	ErrAlreadyInitialized = errors.New("vault: already initialised")
	// ErrWrongPassphrase: Unseal was given a passphrase that does not open
	// the keyring; the vault stays sealed.
	ErrWrongPassphrase = errors.New("vault: wrong passphrase")
	// ErrUnsealRateLimited: too soon after a failed Unseal.
	ErrUnsealRateLimited = errors.New("vault: unseal attempts are rate limited")
	// ErrWrongRootKey: the root key from the key file or the environment
	// does not open the keyring.
	ErrWrongRootKey = errors.New("vault: the root key does not match the keyring")
	// ErrKeySource: the root key could not be read (missing, malformed, or
	// a key file others can read).
	ErrKeySource = errors.New("vault: root key source")

	// ErrCorrupt: a ciphertext (or wrapped key) failed to parse or to
	// authenticate: it was damaged, or copied from another row.
	ErrCorrupt = errors.New("vault: ciphertext corrupt or moved")
	// ErrMissingTerm: a ciphertext names a key term the keyring lacks.
	ErrMissingTerm = errors.New("vault: key term missing")
	// ErrTermRetired: a ciphertext names a key term below the minimum
	// decryption term.
	ErrTermRetired = errors.New("vault: key term retired")
	// ErrTermInUse: SetMinDecryptionTerm would retire a term that secrets
	// still use; rewrap first.
	ErrTermInUse = errors.New("vault: key term still in use")

	// ErrNotFound: no such secret in that environment.
	ErrNotFound = errors.New("vault: secret not found")
	// ErrInvalid: an argument the vault cannot use (a name, an option, a
	// value too large).
	ErrInvalid = errors.New("vault: invalid argument")
	// ErrUnknownEnvironment: an environment not in the configured list.
	ErrUnknownEnvironment = errors.New("vault: unknown environment")

	// ErrDenied: Resolve refused the access. The errors below wrap it.
	ErrDenied = errors.New("vault: access denied")
	// ErrWrongEnvironment: the access runs in another environment than
	// the secret's.
	ErrWrongEnvironment = errors.New("vault: access from another environment")
	// ErrNotBound: the secret is not bound to the connector, host or model.
	ErrNotBound = errors.New("vault: secret not bound to this destination")
	// ErrExpired: the secret is overdue for rotation and set to block.
	ErrExpired = errors.New("vault: secret expired")
	// ErrAudit: the access hook failed, so the access fails (fail closed).
	ErrAudit = errors.New("vault: access could not be recorded")
)
