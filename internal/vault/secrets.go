package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// Options are a secret's settings, given whole with each Set.
type Options struct {
	Bindings Bindings
	// RotationPeriod is how long a version may live before it is overdue;
	// 0 for no period. Between 1 minute and 10 years.
	RotationPeriod time.Duration
	// BlockWhenExpired makes Resolve refuse an overdue secret.
	BlockWhenExpired bool
}

// RotationState says how a secret stands against its rotation period.
type RotationState string

const (
	RotationOK      RotationState = "ok"
	RotationDue     RotationState = "due"     // within the last tenth of the period (at most 7 days)
	RotationOverdue RotationState = "overdue" // past the period
)

// SecretInfo is what the vault tells about a secret: never its value.
type SecretInfo struct {
	ID               string        `json:"id"`
	Name             string        `json:"name"`
	Environment      string        `json:"environment"`
	Version          int           `json:"version"`
	KeyTerm          uint32        `json:"keyTerm"`
	Bindings         Bindings      `json:"bindings"`
	RotationPeriod   time.Duration `json:"rotationPeriod,omitempty"`
	RotateBy         *time.Time    `json:"rotateBy,omitempty"`
	Rotation         RotationState `json:"rotation"`
	BlockWhenExpired bool          `json:"blockWhenExpired,omitempty"`
	CreatedAt        time.Time     `json:"createdAt"`
	UpdatedAt        time.Time     `json:"updatedAt"`
	LastUsedAt       *time.Time    `json:"lastUsedAt,omitempty"`
}

const (
	maxNameLen        = 128
	minRotationPeriod = time.Minute
	maxRotationPeriod = 10 * 365 * 24 * time.Hour
	maxAccessField    = 256
)

// ValidSecretName reports whether s may name a secret: 1..128 characters
// from [A-Za-z0-9_.-], starting with a letter, as in OPENAI_API_KEY or
// helpdesk.token.
func ValidSecretName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && !('0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (v *Vault) checkEnv(env string) error {
	if !slices.Contains(v.envs, env) {
		return fmt.Errorf("%w: %q (known: %v)", ErrUnknownEnvironment, env, v.envs)
	}
	return nil
}

func (v *Vault) checkSecret(env, name string) error {
	if err := v.checkEnv(env); err != nil {
		return err
	}
	if !ValidSecretName(name) {
		return fmt.Errorf("%w: secret name %q: use 1..%d letters, digits, '_', '-' or '.', starting with a letter", ErrInvalid, name, maxNameLen)
	}
	return nil
}

// Set stores value as the next version of env/name (version 1 if new),
// sealed under a fresh data key wrapped by the primary term; the previous
// version's ciphertext is replaced, not kept. The value is not retained;
// the caller should zero it.
func (v *Vault) Set(ctx context.Context, env, name string, value []byte, opts Options) (SecretInfo, error) {
	if err := v.checkSecret(env, name); err != nil {
		return SecretInfo{}, err
	}
	if v.Sealed() {
		return SecretInfo{}, fmt.Errorf("vault: set secret %s/%s: %w", env, name, ErrSealed)
	}
	if len(value) == 0 || len(value) > maxValueSize {
		return SecretInfo{}, fmt.Errorf("%w: a value of 1..%d bytes is required", ErrInvalid, maxValueSize)
	}
	bindings, err := opts.Bindings.normalize()
	if err != nil {
		return SecretInfo{}, err
	}
	if p := opts.RotationPeriod; p != 0 && (p < minRotationPeriod || p > maxRotationPeriod) {
		return SecretInfo{}, fmt.Errorf("%w: a rotation period between %s and %s", ErrInvalid, minRotationPeriod, maxRotationPeriod)
	}
	var sec store.Secret
	var dataKey []byte
	defer func() { zero(dataKey) }()
	err = v.store.InTx(ctx, func(tx store.Tx) error {
		zero(dataKey)
		st, err := tx.LockVaultState(ctx)
		if err != nil {
			return err
		}
		if err := v.syncKeyring(ctx, tx, st); err != nil {
			return err
		}
		termKey, err := v.termKey(st.PrimaryTerm)
		if err != nil {
			return err
		}
		defer zero(termKey)
		now := v.now().UTC().Truncate(time.Microsecond)
		old, err := tx.GetSecret(ctx, env, name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			sec = store.Secret{ID: store.NewID("sec"), Environment: env, Name: name, Version: 1, CreatedAt: now}
		case err != nil:
			return err
		default:
			sec = old
			sec.Version++
		}
		sec.KeyTerm, sec.Bindings, sec.RotationPeriod, sec.BlockExpired, sec.UpdatedAt =
			st.PrimaryTerm, bindings.toStore(), opts.RotationPeriod, opts.BlockWhenExpired, now
		ref := secretRef{id: sec.ID, environment: env, name: name, version: sec.Version}
		if sec.Ciphertext, dataKey, err = sealEnvelope(st.PrimaryTerm, termKey, ref, value); err != nil {
			return err
		}
		if sec.Version == 1 {
			return tx.CreateSecret(ctx, sec)
		}
		return tx.ReplaceSecret(ctx, sec)
	})
	if err != nil {
		return SecretInfo{}, fmt.Errorf("vault: set secret %s/%s: %w", env, name, err)
	}
	if e, err := parseEnvelope(sec.Ciphertext); err == nil {
		v.cache.put(cacheID(sec, e), dataKey)
	}
	return v.info(sec), nil
}

// cacheID keys a data key by its secret, version and wrapped bytes.
func cacheID(s store.Secret, e envelope) string {
	return s.ID + "\x00" + strconv.Itoa(s.Version) + "\x00" + e.wrappedID()
}

func (v *Vault) info(s store.Secret) SecretInfo {
	in := SecretInfo{
		ID: s.ID, Name: s.Name, Environment: s.Environment, Version: s.Version, KeyTerm: s.KeyTerm,
		Bindings: bindingsFromStore(s.Bindings), RotationPeriod: s.RotationPeriod, BlockWhenExpired: s.BlockExpired,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, LastUsedAt: s.LastUsedAt, Rotation: RotationOK,
	}
	if s.RotationPeriod > 0 {
		by := s.UpdatedAt.Add(s.RotationPeriod)
		in.RotateBy = &by
		in.Rotation = rotationState(s.UpdatedAt, s.RotationPeriod, v.now())
	}
	return in
}

func rotationState(updated time.Time, period time.Duration, now time.Time) RotationState {
	if period <= 0 {
		return RotationOK
	}
	age := now.Sub(updated)
	switch {
	case age >= period:
		return RotationOverdue
	case age >= period-min(period/10, 7*24*time.Hour):
		return RotationDue
	}
	return RotationOK
}

// Get returns a secret's metadata.
func (v *Vault) Get(ctx context.Context, env, name string) (SecretInfo, error) {
	if err := v.checkSecret(env, name); err != nil {
		return SecretInfo{}, err
	}
	s, err := v.store.GetSecret(ctx, env, name)
	if err != nil {
		return SecretInfo{}, v.storeErr(err, "get secret %s/%s", env, name)
	}
	return v.info(s), nil
}

// List lists the secrets of env, or of every environment when env is "",
// without their values. It works while sealed.
func (v *Vault) List(ctx context.Context, env string) ([]SecretInfo, error) {
	if env != "" {
		if err := v.checkEnv(env); err != nil {
			return nil, err
		}
	}
	rows, err := v.store.ListSecrets(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("vault: list secrets: %w", err)
	}
	out := make([]SecretInfo, 0, len(rows))
	for _, s := range rows {
		out = append(out, v.info(s))
	}
	return out, nil
}

// Delete deletes a secret and the record of its uses.
func (v *Vault) Delete(ctx context.Context, env, name string) error {
	if err := v.checkSecret(env, name); err != nil {
		return err
	}
	if err := v.store.DeleteSecret(ctx, env, name); err != nil {
		return v.storeErr(err, "delete secret %s/%s", env, name)
	}
	v.cache.purge()
	return nil
}

func (v *Vault) storeErr(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("vault: %s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("vault: %s: %w", what, err)
}

// Resolve returns the plaintext of env/name for a, the only function that
// does. It refuses an access from another environment than env, one the
// secret's bindings do not allow, and an expired secret set to block; it
// records the use; and it tells the AccessHook about the access whatever
// its outcome, failing if the hook fails. A first use by a workflow and
// environment, and a burst of failed decryptions, also raise a
// KindUnusualAccess event. The caller owns the returned slice and should
// zero it when done.
func (v *Vault) Resolve(ctx context.Context, a Access, env, name string) ([]byte, error) {
	now := v.now().UTC()
	ev := Event{Kind: KindAccess, Name: name, Environment: env, Access: a, At: now}
	// refuse reports a refusal (or failure) to the hook and returns err,
	// joined with the hook's error if that failed too.
	refuse := func(outcome Outcome, reason string, err error) ([]byte, error) {
		ev.Outcome, ev.Reason = outcome, reason
		err = fmt.Errorf("vault: resolve %s/%s: %w", env, name, err)
		if herr := v.emit(ctx, ev); herr != nil {
			return nil, errors.Join(err, herr)
		}
		return nil, err
	}
	if err := v.checkSecret(env, name); err != nil {
		return refuse(OutcomeDenied, "bad environment or name", err)
	}
	if len(a.RunID) > maxAccessField || len(a.Workflow) > maxAccessField || len(a.Connector) > maxAccessField ||
		len(a.Host) > maxAccessField || len(a.Model) > maxAccessField {
		return refuse(OutcomeDenied, "access identity too long", fmt.Errorf("%w: access fields are limited to %d bytes", ErrInvalid, maxAccessField))
	}
	if a.Environment != env {
		// Name the secret in the event if it exists, but answer the same
		// either way: another environment learns nothing.
		if s, err := v.store.GetSecret(ctx, env, name); err == nil {
			ev.SecretID, ev.Version = s.ID, s.Version
		}
		return refuse(OutcomeDenied, fmt.Sprintf("access from environment %q", a.Environment), fmt.Errorf("%w: %w", ErrDenied, ErrWrongEnvironment))
	}
	if v.Sealed() {
		return refuse(OutcomeFailed, "vault sealed", ErrSealed)
	}
	s, err := v.store.GetSecret(ctx, env, name)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(OutcomeFailed, "no such secret", ErrNotFound)
	}
	if err != nil {
		return refuse(OutcomeFailed, "store error", err)
	}
	ev.SecretID, ev.Version = s.ID, s.Version
	b := bindingsFromStore(s.Bindings)
	if why := b.allows(a); why != "" {
		out, rerr := refuse(OutcomeDenied, why, fmt.Errorf("%w: %w: %s", ErrDenied, ErrNotBound, why))
		// An attempt to send a secret where it is not bound is an alert,
		// not only a refusal: a definition, a redirect or a compromised
		// connector is trying to carry it elsewhere.
		alert := ev
		alert.Kind, alert.Outcome, alert.Reason = KindBindingViolation, OutcomeDenied, why
		if herr := v.emit(ctx, alert); herr != nil {
			rerr = errors.Join(rerr, herr)
		}
		return out, rerr
	}
	if s.BlockExpired && rotationState(s.UpdatedAt, s.RotationPeriod, now) == RotationOverdue {
		return refuse(OutcomeDenied, "expired: overdue for rotation", fmt.Errorf("%w: %w: overdue for rotation since %s", ErrDenied, ErrExpired, s.UpdatedAt.Add(s.RotationPeriod).Format(time.RFC3339)))
	}

	value, err := v.open(ctx, s)
	if err != nil {
		out, rerr := refuse(OutcomeFailed, decryptReason(err), err)
		if n, alert := v.burst.fail(now); alert {
			unusual := ev
			unusual.Kind, unusual.Outcome = KindUnusualAccess, OutcomeFailed
			unusual.Reason = fmt.Sprintf("burst of failed decryptions: %d within %s", n, v.burst.window)
			if herr := v.emit(ctx, unusual); herr != nil {
				rerr = errors.Join(rerr, herr)
			}
		}
		return out, rerr
	}

	first, err := v.recordUse(ctx, s, a, now)
	if err != nil {
		zero(value)
		return refuse(OutcomeFailed, "could not record the use", err)
	}
	ev.Outcome = OutcomeOK
	if err := v.emit(ctx, ev); err != nil {
		zero(value)
		return nil, fmt.Errorf("vault: resolve %s/%s: %w", env, name, err)
	}
	if first {
		unusual := ev
		unusual.Kind = KindUnusualAccess
		unusual.Reason = fmt.Sprintf("first use by workflow %q in environment %q", a.Workflow, a.Environment)
		if err := v.emit(ctx, unusual); err != nil {
			zero(value)
			return nil, fmt.Errorf("vault: resolve %s/%s: %w", env, name, err)
		}
	}
	return value, nil
}

// decryptReason names the failure for the audit event.
func decryptReason(err error) string {
	switch {
	case errors.Is(err, ErrSealed):
		return "vault sealed"
	case errors.Is(err, ErrTermRetired):
		return "key term retired"
	case errors.Is(err, ErrMissingTerm):
		return "key term missing"
	}
	return "ciphertext corrupt or moved"
}

// open decrypts s's value, using the data key cache.
func (v *Vault) open(ctx context.Context, s store.Secret) ([]byte, error) {
	e, err := parseEnvelope(s.Ciphertext)
	if err != nil {
		return nil, err
	}
	if e.term != s.KeyTerm {
		return nil, fmt.Errorf("%w: the envelope's term differs from the row's", ErrCorrupt)
	}
	ref := secretRef{id: s.ID, environment: s.Environment, name: s.Name, version: s.Version}
	v.mu.RLock()
	sealed, minTerm, primary := v.root == nil, v.minTerm, v.primary
	v.mu.RUnlock()
	if !sealed && e.term != primary {
		// Under a term other than the primary: another node may have
		// rotated or retired terms since this one loaded the keyring.
		// Once a rewrap is done this happens only for stale rows.
		st, err := v.store.GetVaultState(ctx)
		if err != nil {
			return nil, err
		}
		if err := v.syncKeyring(ctx, v.store, st); err != nil {
			return nil, err
		}
		v.mu.RLock()
		sealed, minTerm = v.root == nil, v.minTerm
		v.mu.RUnlock()
	}
	switch {
	case sealed:
		return nil, ErrSealed
	case e.term < minTerm:
		return nil, fmt.Errorf("%w: term %d is below the minimum decryption term %d", ErrTermRetired, e.term, minTerm)
	}
	id := cacheID(s, e)
	dk := make([]byte, keySize)
	defer zero(dk)
	if !v.cache.get(id, dk) {
		tk, err := v.termKey(e.term)
		if err != nil {
			return nil, err
		}
		key, err := unwrapDataKey(e, tk, ref)
		zero(tk)
		if err != nil {
			return nil, fmt.Errorf("%w: the data key does not open", ErrCorrupt)
		}
		copy(dk, key)
		zero(key)
		v.cache.put(id, dk)
	}
	value, err := openSealed(dk, e.nonce, e.sealed, valueAD(ref))
	if err != nil {
		return nil, fmt.Errorf("%w: the value does not open", ErrCorrupt)
	}
	return value, nil
}

// recordUse writes the secret's last use when the stored one is older than
// LastUseEvery, and the (workflow, environment) pair when new, reporting
// whether it was.
func (v *Vault) recordUse(ctx context.Context, s store.Secret, a Access, now time.Time) (bool, error) {
	key := s.ID + "\x00" + a.Workflow + "\x00" + a.Environment
	seen := v.seen.has(key)
	touch := s.LastUsedAt == nil || now.Sub(*s.LastUsedAt) >= v.lastUseEvery
	if seen && !touch {
		return false, nil
	}
	first := false
	err := v.store.InTx(ctx, func(tx store.Tx) error {
		var err error
		if !seen {
			if first, err = tx.RecordSecretUse(ctx, store.SecretUse{SecretID: s.ID, Workflow: a.Workflow, Environment: a.Environment, At: now}); err != nil {
				return err
			}
		}
		if touch {
			return tx.TouchSecret(ctx, s.ID, now)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	v.seen.add(key)
	return first, nil
}
