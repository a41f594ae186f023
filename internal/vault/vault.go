// Package vault keeps Moat's secrets: envelope encryption under a keyring
// of key terms wrapped by a root key, key rotation with a resumable rewrap,
// a sealed state that holds no keys, per-environment secrets bound to the
// connectors, hosts and models they may reach, and one function, Resolve,
// through which every plaintext leaves, recorded by an AccessHook.
//
// Keys, from the outside in:
//
//   - the root key, from a KeySource (a file, an environment variable, or
//     a passphrase through Argon2id), never stored in the database;
//   - key terms (1, 2, …), AES-256 keys stored wrapped under the root key;
//     one is primary and wraps new data keys; older ones still decrypt
//     until retired with SetMinDecryptionTerm;
//   - a data key per secret version, wrapped under a term, sealing the value
//     (see envelope.go for the format).
package vault

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// DefaultEnvironments are the environments when Config names none.
var DefaultEnvironments = []string{"dev", "staging", "prod"}

// Config configures a Vault. Store, Source and Hook are required.
type Config struct {
	Store  store.Store
	Source KeySource
	Hook   AccessHook
	// Environments a secret may belong to; default DefaultEnvironments.
	Environments []string
	// Now replaces time.Now in tests.
	Now func() time.Time
	// CacheSize bounds the cache of unwrapped data keys; default 1024,
	// negative to disable.
	CacheSize int
	// UnsealBackoff is the wait after the first failed Unseal, doubling
	// with each further failure up to UnsealMaxBackoff; defaults 1 s and
	// 5 min.
	UnsealBackoff, UnsealMaxBackoff time.Duration
	// A burst of BurstThreshold failed decryptions within BurstWindow
	// raises an unusual-access alert; defaults 5 and 1 min.
	BurstThreshold int
	BurstWindow    time.Duration
	// LastUseEvery is how stale a secret's recorded last use may get
	// before Resolve writes it again; default 1 min. Bounding the writes
	// keeps a warm Resolve free of them.
	LastUseEvery time.Duration
}

// Vault is safe for concurrent use.
type Vault struct {
	store        store.Store
	source       KeySource
	hook         AccessHook
	envs         []string
	now          func() time.Time
	lastUseEvery time.Duration

	// mu guards the key material. Operations copy what they need under
	// it and zero their copies after use, so Seal never waits on them.
	mu      sync.RWMutex
	root    []byte            // nil when sealed
	terms   map[uint32][]byte // unwrapped key terms ≥ minTerm
	primary uint32
	minTerm uint32

	cache   *keyCache
	payload *PayloadKeys // run payload keys, once PayloadKeys is called
	burst   *failureBurst
	seen    *seenUses
	unseal  unsealLimiter
}

// Open opens the vault. With a key file or an environment key it is
// unsealed on return, initialising the keyring on first start; with a
// passphrase it stays sealed until Init (first start) or Unseal.
func Open(ctx context.Context, cfg Config) (*Vault, error) {
	if cfg.Store == nil || cfg.Source == nil || cfg.Hook == nil {
		return nil, fmt.Errorf("%w: a store, a key source and an access hook are required", ErrInvalid)
	}
	envs := cfg.Environments
	if len(envs) == 0 {
		envs = DefaultEnvironments
	}
	for _, e := range envs {
		if !validName(e, 32) {
			return nil, fmt.Errorf("%w: environment name %q", ErrInvalid, e)
		}
	}
	v := &Vault{
		store: cfg.Store, source: cfg.Source, hook: cfg.Hook,
		envs: slices.Clone(envs), now: cfg.Now, lastUseEvery: cfg.LastUseEvery,
		cache: newKeyCache(cmpOr(cfg.CacheSize, 1024)),
		burst: &failureBurst{threshold: cmpOr(cfg.BurstThreshold, 5), window: cmpOr(cfg.BurstWindow, time.Minute)},
		seen:  &seenUses{max: 100_000, seen: map[string]struct{}{}},
		unseal: unsealLimiter{
			base: cmpOr(cfg.UnsealBackoff, time.Second),
			max:  cmpOr(cfg.UnsealMaxBackoff, 5*time.Minute),
		},
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.lastUseEvery == 0 {
		v.lastUseEvery = time.Minute
	}

	st, err := v.store.GetVaultState(ctx)
	initialised := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("vault: open: %w", err)
	}
	if _, ok := cfg.Source.(Passphrase); ok {
		if initialised && len(st.KDF.Salt) == 0 {
			return nil, fmt.Errorf("%w: the keyring was created with a root key from a file or the environment, not a passphrase", ErrKeySource)
		}
		return v, nil
	}
	if initialised && len(st.KDF.Salt) > 0 {
		return nil, fmt.Errorf("%w: the keyring is protected by a passphrase; start with the passphrase source and unseal", ErrKeySource)
	}
	source := cfg.Source
	if kf, ok := source.(KeyFile); ok && initialised {
		// A keyring exists: a missing key file is an error to report, not
		// one to paper over with a new key that opens nothing.
		kf.Create = false
		source = kf
	}
	root, err := source.RootKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault: open: %w", err)
	}
	if !initialised {
		err = v.initialise(ctx, root, store.KDFParams{})
	} else {
		err = v.unsealWith(ctx, root, st)
	}
	zero(root)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Environments lists the configured environments.
func (v *Vault) Environments() []string { return slices.Clone(v.envs) }

// Warning is what the application should log about the key source, or "".
func (v *Vault) Warning() string { return v.source.Warning() }

// Sealed reports whether the vault holds no keys.
func (v *Vault) Sealed() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.root == nil
}

// initialise creates the keyring: a check value and term 1, both under
// root. When another node initialised it first, it unseals with root
// instead.
func (v *Vault) initialise(ctx context.Context, root []byte, kdf store.KDFParams) error {
	termKey := make([]byte, keySize)
	if _, err := rand.Read(termKey); err != nil {
		return fmt.Errorf("vault: random key: %w", err)
	}
	defer zero(termKey)
	wrapped, err := sealBox(root, termKey, termAD(1))
	if err != nil {
		return fmt.Errorf("vault: init: %w", err)
	}
	check, err := sealBox(root, nil, checkAD())
	if err != nil {
		return fmt.Errorf("vault: init: %w", err)
	}
	now := v.now().UTC()
	st := store.VaultState{PrimaryTerm: 1, MinDecryptionTerm: 1, Check: check, KDF: kdf, CreatedAt: now, UpdatedAt: now}
	err = v.store.InitVault(ctx, st, store.VaultKey{Term: 1, Wrapped: wrapped, CreatedAt: now})
	if errors.Is(err, store.ErrConflict) {
		if st, err = v.store.GetVaultState(ctx); err != nil {
			return fmt.Errorf("vault: init: %w", err)
		}
		return v.unsealWith(ctx, root, st)
	}
	if err != nil {
		return fmt.Errorf("vault: init: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.root = slices.Clone(root)
	v.terms = map[uint32][]byte{1: slices.Clone(termKey)}
	v.primary, v.minTerm = 1, 1
	return nil
}

// unsealWith checks root against the stored check value and loads the
// keyring under it.
func (v *Vault) unsealWith(ctx context.Context, root []byte, st store.VaultState) error {
	if _, err := openBox(root, st.Check, checkAD()); err != nil {
		return ErrWrongRootKey
	}
	keys, err := v.store.ListVaultKeys(ctx)
	if err != nil {
		return fmt.Errorf("vault: load keyring: %w", err)
	}
	terms, err := unwrapTerms(root, keys, st.MinDecryptionTerm)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.zeroKeysLocked()
	v.root = slices.Clone(root)
	v.terms, v.primary, v.minTerm = terms, st.PrimaryTerm, st.MinDecryptionTerm
	return nil
}

// unwrapTerms opens the wrapped terms at or above minTerm.
func unwrapTerms(root []byte, keys []store.VaultKey, minTerm uint32) (map[uint32][]byte, error) {
	terms := make(map[uint32][]byte, len(keys))
	for _, k := range keys {
		if k.Term < minTerm {
			continue
		}
		tk, err := openBox(root, k.Wrapped, termAD(k.Term))
		if err != nil || len(tk) != keySize {
			for _, t := range terms {
				zero(t)
			}
			return nil, fmt.Errorf("%w: key term %d does not open under the root key", ErrCorrupt, k.Term)
		}
		terms[k.Term] = tk
	}
	return terms, nil
}

// syncKeyring brings the in-memory keyring up to st, as read (and locked)
// by the caller's transaction q: another node may have rotated or retired
// terms.
func (v *Vault) syncKeyring(ctx context.Context, q store.Queries, st store.VaultState) error {
	v.mu.RLock()
	root := slices.Clone(v.root)
	_, hasPrimary := v.terms[st.PrimaryTerm]
	current := v.primary == st.PrimaryTerm && v.minTerm == st.MinDecryptionTerm && hasPrimary
	v.mu.RUnlock()
	defer zero(root)
	if root == nil {
		return ErrSealed
	}
	if current {
		return nil
	}
	keys, err := q.ListVaultKeys(ctx)
	if err != nil {
		return fmt.Errorf("vault: load keyring: %w", err)
	}
	terms, err := unwrapTerms(root, keys, st.MinDecryptionTerm)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.root == nil {
		for _, t := range terms {
			zero(t)
		}
		return ErrSealed
	}
	for _, t := range v.terms {
		zero(t)
	}
	v.terms, v.primary, v.minTerm = terms, st.PrimaryTerm, st.MinDecryptionTerm
	v.cache.purge()
	return nil
}

// termKey returns a copy of a term's key (the caller zeroes it), with the
// minimum decryption term.
func (v *Vault) termKey(term uint32) ([]byte, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	switch {
	case v.root == nil:
		return nil, ErrSealed
	case term < v.minTerm:
		return nil, fmt.Errorf("%w: term %d is below the minimum decryption term %d", ErrTermRetired, term, v.minTerm)
	}
	k, ok := v.terms[term]
	if !ok {
		return nil, fmt.Errorf("%w: term %d", ErrMissingTerm, term)
	}
	return slices.Clone(k), nil
}

// Seal zeroises the root key, the key terms and the cached data keys; from
// then on everything that needs a plaintext fails with ErrSealed.
// Operations already holding copies of a key finish with them.
func (v *Vault) Seal() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.zeroKeysLocked()
}

func (v *Vault) zeroKeysLocked() {
	zero(v.root)
	v.root = nil
	for _, k := range v.terms {
		zero(k)
	}
	v.terms = nil
	v.cache.purge()
	if v.payload != nil {
		v.payload.purge()
	}
}

// Init creates the keyring of a passphrase vault and leaves it unsealed.
// The passphrase is not kept; the caller should zero it.
func (v *Vault) Init(ctx context.Context, passphrase []byte) error {
	p, ok := v.source.(Passphrase)
	if !ok {
		return fmt.Errorf("%w: Init is for a vault whose root key comes from a passphrase", ErrInvalid)
	}
	if len(passphrase) < 12 {
		return fmt.Errorf("%w: a passphrase needs at least 12 characters", ErrInvalid)
	}
	v.unseal.mu.Lock()
	defer v.unseal.mu.Unlock()
	if _, err := v.store.GetVaultState(ctx); err == nil {
		return ErrAlreadyInitialized
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("vault: init: %w", err)
	}
	kdf, err := p.params()
	if err != nil {
		return err
	}
	root := deriveKey(passphrase, kdf)
	defer zero(root)
	return v.initialise(ctx, root, kdf)
}

// Unseal opens a sealed vault. A passphrase vault derives its root key from
// passphrase; other sources read theirs again and take no passphrase.
// After a wrong passphrase, further attempts wait an exponentially growing
// delay (ErrUnsealRateLimited); attempts run one at a time.
func (v *Vault) Unseal(ctx context.Context, passphrase []byte) error {
	v.unseal.mu.Lock()
	defer v.unseal.mu.Unlock()
	if !v.Sealed() {
		return nil
	}
	now := v.now()
	if wait := v.unseal.wait(now); wait > 0 {
		return fmt.Errorf("%w: try again in %s", ErrUnsealRateLimited, wait.Round(time.Second))
	}
	st, err := v.store.GetVaultState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotInitialized
	}
	if err != nil {
		return fmt.Errorf("vault: unseal: %w", err)
	}
	var root []byte
	if _, ok := v.source.(Passphrase); ok {
		if err := checkKDF(st.KDF); err != nil {
			return fmt.Errorf("vault: unseal: stored parameters: %w", err)
		}
		root = deriveKey(passphrase, st.KDF)
	} else {
		if len(passphrase) > 0 {
			return fmt.Errorf("%w: this vault's root key comes from the %s source, not a passphrase", ErrInvalid, v.source.Kind())
		}
		if root, err = v.source.RootKey(ctx); err != nil {
			return fmt.Errorf("vault: unseal: %w", err)
		}
	}
	defer zero(root)
	err = v.unsealWith(ctx, root, st)
	if errors.Is(err, ErrWrongRootKey) {
		v.unseal.fail(now)
		if _, ok := v.source.(Passphrase); ok {
			return ErrWrongPassphrase
		}
	}
	if err != nil {
		return err
	}
	v.unseal.reset()
	return nil
}

// unsealLimiter spaces unseal attempts after failures.
type unsealLimiter struct {
	mu        sync.Mutex // held for a whole attempt
	base, max time.Duration
	failures  int
	next      time.Time
}

func (l *unsealLimiter) wait(now time.Time) time.Duration {
	if now.Before(l.next) {
		return l.next.Sub(now)
	}
	return 0
}

func (l *unsealLimiter) fail(now time.Time) {
	l.failures++
	d := l.base
	for i := 1; i < l.failures && d < l.max; i++ {
		d *= 2
	}
	l.next = now.Add(min(d, l.max))
}

func (l *unsealLimiter) reset() { l.failures, l.next = 0, time.Time{} }

// validName: 1..max characters from [a-z0-9-], starting with a letter.
func validName(s string, max int) bool {
	if s == "" || len(s) > max || !('a' <= s[0] && s[0] <= 'z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
