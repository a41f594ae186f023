package vault

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Access is who asks for a secret's plaintext and where it will go.
type Access struct {
	RunID       string `json:"runId,omitempty"`
	Workflow    string `json:"workflow,omitempty"` // "project/name"; "" for a caller outside any workflow
	Environment string `json:"environment"`        // the environment the caller runs in
	Connector   string `json:"connector"`
	Host        string `json:"host,omitempty"`  // where the value will be sent, as in an HTTP request
	Model       string `json:"model,omitempty"` // for AI connectors
}

// Event kinds.
const (
	KindAccess        = "secret.access"
	KindUnusualAccess = "secret.unusual_access"
	// KindBindingViolation is an alert: an access for a connector, host or
	// model the secret is not bound to.
	KindBindingViolation = "secret.binding_violation"
)

// Outcome of an access.
type Outcome string

const (
	OutcomeOK     Outcome = "ok"
	OutcomeDenied Outcome = "denied" // the vault refused: environment, binding, expiry
	OutcomeFailed Outcome = "failed" // it could not: sealed, missing, corrupt, retired term
)

// Event is what the vault tells its AccessHook about one access, or an
// alert about unusual access. It never holds the value.
type Event struct {
	Kind        string    `json:"kind"`
	SecretID    string    `json:"secretId,omitempty"`
	Name        string    `json:"name"`
	Environment string    `json:"environment"`
	Version     int       `json:"version,omitempty"`
	Access      Access    `json:"access"`
	Outcome     Outcome   `json:"outcome"`
	Reason      string    `json:"reason,omitempty"`
	At          time.Time `json:"at"`
}

// AccessHook receives every access to a secret's plaintext and every
// unusual-access alert. The audit log implements it. When it returns an
// error the access fails: no plaintext leaves the vault unrecorded.
type AccessHook interface {
	SecretAccessed(ctx context.Context, e Event) error
}

// emit sends e to the hook, wrapping a failure in ErrAudit.
func (v *Vault) emit(ctx context.Context, e Event) error {
	if err := v.hook.SecretAccessed(ctx, e); err != nil {
		return fmt.Errorf("%w: %s of %s/%s: %w", ErrAudit, e.Kind, e.Environment, e.Name, err)
	}
	return nil
}

// failureBurst counts failed decryptions in a sliding window and says when
// a burst should raise an alert: once per window.
type failureBurst struct {
	mu        sync.Mutex
	threshold int
	window    time.Duration
	times     []time.Time
	alerted   time.Time
}

// fail records a failure at now and reports how many fell within the
// window when that count reaches the threshold and no alert went out in
// the last window.
func (b *failureBurst) fail(now time.Time) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cut := now.Add(-b.window)
	keep := b.times[:0]
	for _, t := range b.times {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	b.times = append(keep, now)
	if len(b.times) > b.threshold {
		// Only the threshold's worth matters; drop the oldest.
		b.times = b.times[len(b.times)-b.threshold:]
	}
	if len(b.times) >= b.threshold && (b.alerted.IsZero() || !b.alerted.After(cut)) {
		b.alerted = now
		return len(b.times), true
	}
	return len(b.times), false
}

// seenUses remembers (secret, version, workflow, environment) tuples
// already recorded, so that a warm Resolve writes nothing. Bounded: when
// full it starts again, which costs a write per tuple, not correctness.
type seenUses struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func (s *seenUses) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[k]
	return ok
}

func (s *seenUses) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) >= s.max {
		clear(s.seen)
	}
	s.seen[k] = struct{}{}
}
