package vault

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// RotateKey adds a key term and makes it primary: new secret versions are
// wrapped under it, and the older terms still decrypt. Run Rewrap to move
// existing secrets onto it.
func (v *Vault) RotateKey(ctx context.Context) (uint32, error) {
	if v.Sealed() {
		return 0, fmt.Errorf("vault: rotate key: %w", ErrSealed)
	}
	termKey := make([]byte, keySize)
	if _, err := rand.Read(termKey); err != nil {
		return 0, fmt.Errorf("vault: random key: %w", err)
	}
	defer zero(termKey)
	var term uint32
	var st store.VaultState
	err := v.store.InTx(ctx, func(tx store.Tx) error {
		var err error
		if st, err = tx.LockVaultState(ctx); err != nil {
			return err
		}
		if err := v.syncKeyring(ctx, tx, st); err != nil {
			return err
		}
		keys, err := tx.ListVaultKeys(ctx)
		if err != nil {
			return err
		}
		term = st.PrimaryTerm
		for _, k := range keys {
			term = max(term, k.Term)
		}
		if term == ^uint32(0) {
			return fmt.Errorf("%w: no key term left", ErrInvalid)
		}
		term++
		v.mu.RLock()
		root := slices.Clone(v.root)
		v.mu.RUnlock()
		defer zero(root)
		if root == nil {
			return ErrSealed
		}
		wrapped, err := sealBox(root, termKey, termAD(term))
		if err != nil {
			return err
		}
		now := v.now().UTC()
		if err := tx.AddVaultKey(ctx, store.VaultKey{Term: term, Wrapped: wrapped, CreatedAt: now}); err != nil {
			return err
		}
		st.PrimaryTerm, st.UpdatedAt = term, now
		return tx.UpdateVaultState(ctx, st)
	})
	if err != nil {
		return 0, fmt.Errorf("vault: rotate key: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.root != nil {
		v.terms[term] = slices.Clone(termKey)
		v.primary = term
	}
	return term, nil
}

// RewrapOptions tune Rewrap.
type RewrapOptions struct {
	// BatchSize is how many secrets one transaction rewraps; default 100.
	BatchSize int
	// Progress, when set, is called after each committed batch with the
	// totals so far.
	Progress func(RewrapResult)
}

// RewrapResult counts what a Rewrap did.
type RewrapResult struct {
	Term      uint32   // the term secrets were rewrapped to
	Rewrapped int      // secrets moved to Term
	Failed    []string // ids of secrets whose data key did not open; left as they were
	// RunKeys counts run payload keys moved to Term; RunKeysFailed those
	// that did not open and were left as they were.
	RunKeys, RunKeysFailed int
}

// Rewrap rewraps every secret's data key under the primary term, in
// batches ordered by id, each in its own transaction. The values are not
// re-encrypted. It is safe to stop at any point (a cancelled context, a
// crash, kill -9): a batch commits whole or not at all, and running Rewrap
// again picks up the secrets still below the primary term, so none is lost
// or done twice. A secret whose data key fails to open is skipped and
// reported, and keeps its term from being retired.
func (v *Vault) Rewrap(ctx context.Context, opts RewrapOptions) (RewrapResult, error) {
	if v.Sealed() {
		return RewrapResult{}, fmt.Errorf("vault: rewrap: %w", ErrSealed)
	}
	batch := cmpOr(opts.BatchSize, 100)
	var res RewrapResult
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("vault: rewrap: %w", err)
		}
		var n, done int
		var failed []string
		err := v.store.InTx(ctx, func(tx store.Tx) error {
			n, done, failed = 0, 0, nil
			st, err := tx.LockVaultState(ctx)
			if err != nil {
				return err
			}
			if err := v.syncKeyring(ctx, tx, st); err != nil {
				return err
			}
			if res.Term != 0 && res.Term != st.PrimaryTerm {
				// Rotated again meanwhile: start over towards the new term.
				after = ""
			}
			res.Term = st.PrimaryTerm
			secrets, err := tx.ListSecretsBelowTerm(ctx, st.PrimaryTerm, after, batch)
			if err != nil {
				return err
			}
			n = len(secrets)
			if n == 0 {
				return nil
			}
			to, err := v.termKey(st.PrimaryTerm)
			if err != nil {
				return err
			}
			defer zero(to)
			for _, s := range secrets {
				after = s.ID
				ct, err := v.rewrapOne(s, st.PrimaryTerm, to)
				if errors.Is(err, ErrSealed) {
					return err
				}
				if err != nil {
					failed = append(failed, s.ID)
					continue
				}
				ok, err := tx.RewrapSecret(ctx, s.ID, s.Version, s.KeyTerm, st.PrimaryTerm, ct)
				if err != nil {
					return err
				}
				if ok {
					done++
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("vault: rewrap: %w", err)
		}
		if n == 0 {
			return v.rewrapRunKeys(ctx, res, batch, opts.Progress)
		}
		res.Rewrapped += done
		res.Failed = append(res.Failed, failed...)
		if opts.Progress != nil {
			opts.Progress(res)
		}
	}
}

// rewrapRunKeys moves the run payload keys below the primary term under
// it, batch by batch; like the secrets' rewrap it may stop at any point.
func (v *Vault) rewrapRunKeys(ctx context.Context, res RewrapResult, batch int, progress func(RewrapResult)) (RewrapResult, error) {
	if v.payload == nil {
		return res, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("vault: rewrap: %w", err)
		}
		moved, failed, err := v.payload.rewrap(ctx, res.Term, batch)
		res.RunKeys += moved
		res.RunKeysFailed += failed
		if err != nil {
			return res, fmt.Errorf("vault: rewrap run keys: %w", err)
		}
		if moved == 0 {
			return res, nil
		}
		if progress != nil {
			progress(res)
		}
	}
}

// rewrapOne returns s's envelope with its data key wrapped under term.
func (v *Vault) rewrapOne(s store.Secret, term uint32, to []byte) ([]byte, error) {
	e, err := parseEnvelope(s.Ciphertext)
	if err != nil {
		return nil, err
	}
	if e.term != s.KeyTerm {
		return nil, fmt.Errorf("%w: the envelope's term differs from the row's", ErrCorrupt)
	}
	from, err := v.termKey(e.term)
	if err != nil {
		return nil, err
	}
	defer zero(from)
	ref := secretRef{id: s.ID, environment: s.Environment, name: s.Name, version: s.Version}
	dk, err := unwrapDataKey(e, from, ref)
	if err != nil {
		return nil, fmt.Errorf("%w: data key of secret %s", ErrCorrupt, s.ID)
	}
	defer zero(dk)
	return rewrapEnvelope(e, dk, term, to, ref)
}

// SetMinDecryptionTerm retires the key terms below term: their keys are
// deleted, and a ciphertext under them is refused with ErrTermRetired. It
// refuses (ErrTermInUse, naming how many) while any secret still uses
// them; run Rewrap first. Terms only ever retire: a lower term than the
// current minimum is refused.
func (v *Vault) SetMinDecryptionTerm(ctx context.Context, term uint32) error {
	if v.Sealed() {
		return fmt.Errorf("vault: set minimum decryption term: %w", ErrSealed)
	}
	var st store.VaultState
	err := v.store.InTx(ctx, func(tx store.Tx) error {
		var err error
		if st, err = tx.LockVaultState(ctx); err != nil {
			return err
		}
		if err := v.syncKeyring(ctx, tx, st); err != nil {
			return err
		}
		switch {
		case term > st.PrimaryTerm:
			return fmt.Errorf("%w: term %d is above the primary term %d", ErrInvalid, term, st.PrimaryTerm)
		case term < st.MinDecryptionTerm:
			return fmt.Errorf("%w: terms below %d are retired already and cannot come back", ErrInvalid, st.MinDecryptionTerm)
		case term == st.MinDecryptionTerm:
			return nil
		}
		counts, err := tx.CountSecretsByTerm(ctx)
		if err != nil {
			return err
		}
		inUse := 0
		for t, n := range counts {
			if t < term {
				inUse += n
			}
		}
		if inUse > 0 {
			return fmt.Errorf("%w: %d secrets still use terms below %d; run the rewrap first", ErrTermInUse, inUse, term)
		}
		if v.payload != nil {
			left, err := v.payload.keys.ListRunKeysBelowTerm(ctx, term, 1)
			if err != nil {
				return err
			}
			if len(left) > 0 {
				return fmt.Errorf("%w: run payload keys still use terms below %d; run the rewrap first", ErrTermInUse, term)
			}
		}
		st.MinDecryptionTerm, st.UpdatedAt = term, v.now().UTC()
		if err := tx.UpdateVaultState(ctx, st); err != nil {
			return err
		}
		_, err = tx.DeleteVaultKeysBelow(ctx, term)
		return err
	})
	if err != nil {
		return fmt.Errorf("vault: set minimum decryption term: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for t, k := range v.terms {
		if t < term {
			zero(k)
			delete(v.terms, t)
		}
	}
	v.minTerm = max(v.minTerm, term)
	v.cache.purge()
	return nil
}

// KeyStatus describes the keyring.
type KeyStatus struct {
	Sealed            bool       `json:"sealed"`
	Source            string     `json:"source"`
	PrimaryTerm       uint32     `json:"primaryTerm"`
	MinDecryptionTerm uint32     `json:"minDecryptionTerm"`
	Terms             []TermInfo `json:"terms"`
}

// TermInfo is one key term and how many secrets it wraps.
type TermInfo struct {
	Term      uint32    `json:"term"`
	CreatedAt time.Time `json:"createdAt"`
	Secrets   int       `json:"secrets"`
}

// KeyStatus reports the keyring's terms and use; it needs no key.
func (v *Vault) KeyStatus(ctx context.Context) (KeyStatus, error) {
	ks := KeyStatus{Sealed: v.Sealed(), Source: v.source.Kind()}
	st, err := v.store.GetVaultState(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return ks, nil
	}
	if err != nil {
		return ks, fmt.Errorf("vault: key status: %w", err)
	}
	keys, err := v.store.ListVaultKeys(ctx)
	if err != nil {
		return ks, fmt.Errorf("vault: key status: %w", err)
	}
	counts, err := v.store.CountSecretsByTerm(ctx)
	if err != nil {
		return ks, fmt.Errorf("vault: key status: %w", err)
	}
	ks.PrimaryTerm, ks.MinDecryptionTerm = st.PrimaryTerm, st.MinDecryptionTerm
	for _, k := range keys {
		ks.Terms = append(ks.Terms, TermInfo{Term: k.Term, CreatedAt: k.CreatedAt, Secrets: counts[k.Term]})
	}
	return ks, nil
}
