package vault

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// Run payloads are sealed under keys of their own, one per run and payload
// kind (input, steps, output), so that destroying a kind's key erases that
// kind of the run for good, in every copy of the database made before
// (crypto-shredding). The keys are wrapped under the primary key term and
// kept in a store.RunKeyStore apart from the payloads.
//
// A sealed payload, version 1:
//
//	offset  size  field
//	0       1     0xA1 (no JSON document and no UTF-8 text starts with it)
//	1       12    nonce
//	13      n+16  the payload sealed with AES-256-GCM under the kind's key,
//	              with associated data naming the run, kind and field
const (
	payloadFormatV1 = 0xA1
	payloadOverhead = 1 + nonceSize + tagSize
	// MaxPayloadSize bounds one sealed payload.
	MaxPayloadSize = 64 << 20

	labelRunKey       = "moat/vault/run-key/v1"
	labelPayload      = "moat/vault/payload/v1"
	labelPayloadNonce = "moat/vault/payload-nonce/v1"
)

// PayloadKeys seals and opens run payloads. Keys are cached unwrapped for
// CacheTTL at most, so that a key destroyed on another node stops opening
// here within that time; Seal on the vault empties the cache at once.
type PayloadKeys struct {
	v     *Vault
	keys  store.RunKeyStore
	cache *keyCache // by run id, NUL, kind
}

// PayloadKeysOptions tune PayloadKeys.
type PayloadKeysOptions struct {
	// CacheTTL bounds how long an unwrapped key stays cached; default 1
	// minute, negative to disable the cache.
	CacheTTL time.Duration
	// CacheSize bounds the cached keys, least recently used out first;
	// default 16384 (about three keys per run in flight).
	CacheSize int
}

// PayloadKeys returns the vault's payload sealer over keys. One vault has
// at most one: later calls return the first.
func (v *Vault) PayloadKeys(keys store.RunKeyStore, opts PayloadKeysOptions) *PayloadKeys {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.payload == nil {
		cache := newKeyCache(cmpOr(opts.CacheSize, 16384))
		cache.ttl, cache.now = cmpOr(opts.CacheTTL, time.Minute), v.now
		if cache.ttl < 0 {
			cache.max = 0
		}
		v.payload = &PayloadKeys{v: v, keys: keys, cache: cache}
	}
	return v.payload
}

func runKeyAD(term uint32, runID, kind string) []byte {
	return associatedData(labelRunKey, term, secretRef{id: runID, name: kind})
}

func payloadAD(f store.PayloadField) []byte {
	return associatedData(labelPayload, 0, secretRef{id: f.RunID, environment: f.Kind, name: f.Name})
}

// Seal seals plaintext as field f, creating the run's keys on first use.
func (p *PayloadKeys) Seal(ctx context.Context, f store.PayloadField, plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPayloadSize {
		return nil, fmt.Errorf("%w: a payload of %d bytes is larger than %d", ErrInvalid, len(plaintext), MaxPayloadSize)
	}
	key, err := p.key(ctx, f.RunID, f.Kind, true)
	if err != nil {
		return nil, err
	}
	defer zero(key)
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	ad := payloadAD(f)
	out := make([]byte, 1+nonceSize, payloadOverhead+len(plaintext))
	out[0] = payloadFormatV1
	nonce := out[1 : 1+nonceSize]
	if f.Deterministic {
		// A synthetic nonce: equal values of one field seal alike, and
		// nothing else does.
		m := hmac.New(sha256.New, nonceKey(key))
		m.Write(ad)
		m.Write(plaintext)
		copy(nonce, m.Sum(nil))
	} else if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("vault: random nonce: %w", err)
	}
	return aead.Seal(out, nonce, plaintext, ad), nil
}

func nonceKey(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(labelPayloadNonce))
	return m.Sum(nil)
}

// Open opens a payload sealed as field f. A value that does not start
// with the format byte was stored before payloads were sealed and comes
// back as it is. A destroyed key gives store.ErrPayloadDestroyed.
func (p *PayloadKeys) Open(ctx context.Context, f store.PayloadField, sealed []byte) ([]byte, error) {
	if len(sealed) == 0 || sealed[0] != payloadFormatV1 {
		return sealed, nil
	}
	if len(sealed) < payloadOverhead {
		return nil, fmt.Errorf("%w: a sealed payload of %d bytes is too short", ErrCorrupt, len(sealed))
	}
	key, err := p.key(ctx, f.RunID, f.Kind, false)
	if err != nil {
		return nil, err
	}
	defer zero(key)
	b, err := openSealed(key, sealed[1:1+nonceSize], sealed[1+nonceSize:], payloadAD(f))
	if err != nil {
		return nil, fmt.Errorf("%w: payload %s of run %s", ErrCorrupt, f.Name, f.RunID)
	}
	return b, nil
}

// Destroy destroys payload keys, each a kind of a run, in one write:
// whatever was sealed under them, here or in any copy, no longer opens.
// Destroying a key again is harmless.
func (p *PayloadKeys) Destroy(ctx context.Context, refs ...store.RunKeyRef) error {
	p.forget(refs)
	if err := p.keys.DestroyRunKeys(ctx, refs, p.v.now().UTC()); err != nil {
		return fmt.Errorf("vault: destroy %d run keys: %w", len(refs), err)
	}
	// Again: a read racing the write may have cached a key meanwhile.
	p.forget(refs)
	return nil
}

// Prepare makes a new run's keys, so that its first Seal finds them
// cached; a run that has keys already keeps them.
func (p *PayloadKeys) Prepare(ctx context.Context, runID string) error {
	if p.v.Sealed() {
		return ErrSealed
	}
	made, err := p.create(ctx, runID)
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	for _, k := range made {
		zero(k)
	}
	return err
}

// key returns a copy of a run's key of kind (the caller zeroes it),
// creating all of the run's keys when it has none and create is set.
func (p *PayloadKeys) key(ctx context.Context, runID, kind string, create bool) ([]byte, error) {
	if p.v.Sealed() {
		return nil, ErrSealed
	}
	id := payloadKeyID(runID, kind)
	if k := make([]byte, keySize); p.cache.get(id, k) {
		return k, nil
	}

	stored, err := p.keys.GetRunKey(ctx, runID, kind)
	switch {
	case errors.Is(err, store.ErrNotFound) && create:
		made, cerr := p.create(ctx, runID)
		if cerr == nil {
			for k, key := range made {
				if k != kind {
					zero(key)
				}
			}
			return made[kind], nil
		}
		if !errors.Is(cerr, store.ErrConflict) {
			return nil, cerr
		}
		// Made by another writer at the same time.
		stored, err = p.keys.GetRunKey(ctx, runID, kind)
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w: run %s has no %s key", ErrCorrupt, runID, kind)
	}
	if err != nil {
		return nil, fmt.Errorf("vault: %s key of run %s: %w", kind, runID, err)
	}
	if stored.Wrapped == nil {
		return nil, fmt.Errorf("vault: %s key of run %s: %w", kind, runID, store.ErrPayloadDestroyed)
	}
	termKey, err := p.v.termKey(stored.Term)
	if err != nil {
		return nil, err
	}
	defer zero(termKey)
	key, err := openBox(termKey, stored.Wrapped, runKeyAD(stored.Term, runID, kind))
	if err != nil || len(key) != keySize {
		return nil, fmt.Errorf("%w: %s key of run %s", ErrCorrupt, kind, runID)
	}
	p.cache.put(id, key)
	return key, nil
}

// create makes and stores every kind's key of a run in one write, and
// caches them; it returns copies by kind (the caller zeroes them).
func (p *PayloadKeys) create(ctx context.Context, runID string) (map[string][]byte, error) {
	p.v.mu.RLock()
	term := p.v.primary
	p.v.mu.RUnlock()
	termKey, err := p.v.termKey(term)
	if err != nil {
		return nil, err
	}
	defer zero(termKey)
	made := make(map[string][]byte, len(store.PayloadKinds))
	forget := func() {
		for _, k := range made {
			zero(k)
		}
	}
	rows := make([]store.RunKey, 0, len(store.PayloadKinds))
	for _, kind := range store.PayloadKinds {
		key := make([]byte, keySize)
		if _, err := rand.Read(key); err != nil {
			forget()
			return nil, fmt.Errorf("vault: random run key: %w", err)
		}
		made[kind] = key
		wrapped, err := sealBox(termKey, key, runKeyAD(term, runID, kind))
		if err != nil {
			forget()
			return nil, err
		}
		rows = append(rows, store.RunKey{RunID: runID, Kind: kind, Term: term, Wrapped: wrapped, CreatedAt: p.v.now().UTC()})
	}
	if err := p.keys.PutRunKeys(ctx, rows); err != nil {
		forget()
		return nil, fmt.Errorf("vault: create keys of run %s: %w", runID, err)
	}
	for kind, key := range made {
		p.cache.put(payloadKeyID(runID, kind), key)
	}
	return made, nil
}

func payloadKeyID(runID, kind string) string { return runID + "\x00" + kind }

func (p *PayloadKeys) forget(refs []store.RunKeyRef) {
	for _, r := range refs {
		p.cache.remove(payloadKeyID(r.RunID, r.Kind))
	}
}

// purge empties the cache; the vault calls it when it seals.
func (p *PayloadKeys) purge() { p.cache.purge() }

// rewrap moves up to limit run keys below term under term; it returns how
// many it moved and how many it had to skip because they did not open.
func (p *PayloadKeys) rewrap(ctx context.Context, term uint32, limit int) (moved, failed int, err error) {
	keys, err := p.keys.ListRunKeysBelowTerm(ctx, term, limit)
	if err != nil {
		return 0, 0, err
	}
	to, err := p.v.termKey(term)
	if err != nil {
		return 0, 0, err
	}
	defer zero(to)
	for _, k := range keys {
		from, err := p.v.termKey(k.Term)
		if err != nil {
			failed++
			continue
		}
		key, err := openBox(from, k.Wrapped, runKeyAD(k.Term, k.RunID, k.Kind))
		zero(from)
		if err != nil {
			failed++
			continue
		}
		wrapped, err := sealBox(to, key, runKeyAD(term, k.RunID, k.Kind))
		zero(key)
		if err != nil {
			return moved, failed, err
		}
		old := k.Term
		k.Term, k.Wrapped = term, wrapped
		ok, err := p.keys.RewrapRunKey(ctx, k, old)
		if err != nil {
			return moved, failed, err
		}
		if ok {
			moved++
		}
	}
	return moved, failed, nil
}
