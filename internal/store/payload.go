package store

import (
	"context"
	"errors"
	"time"
)

// Payload kinds: each run's payloads fall in one of three, each kind
// sealed under a key of its own and kept as long as its retention says.
const (
	// PayloadInput is the run's input and the tokens the gateway issued
	// for values in the run (they stand for what came in).
	PayloadInput = "input"
	// PayloadSteps is what the steps produced: their outputs (an AI
	// step's answer among them) and the human tasks they raised.
	PayloadSteps = "steps"
	// PayloadOutput is the run's result.
	PayloadOutput = "output"
)

// PayloadKinds lists the kinds in the order a purge takes them.
var PayloadKinds = []string{PayloadInput, PayloadSteps, PayloadOutput}

// ErrPayloadDestroyed reports a payload whose key was destroyed: it was
// purged or erased and is gone for good.
var ErrPayloadDestroyed = errors.New("store: payload key destroyed")

// PayloadField names one sealed field: the run, its kind and the field
// within the run ("input", "step:classify", "task:tsk_1:title",
// "token:pii.email"). A sealed value opens only as the field it was
// sealed as, so one copied into another row or run fails to open.
type PayloadField struct {
	RunID, Kind, Name string
	// Deterministic seals equal values of the same field alike, so a
	// unique index can compare them (a run's token values); other fields
	// get a fresh nonce each time.
	Deterministic bool
}

// Sealed is a sealed payload and what was found in it.
type Sealed struct {
	Bytes []byte
	// Subjects are digests of the personal identifiers found in the
	// plaintext (e-mail addresses, phone numbers, …), under which the run
	// can be found to erase it.
	Subjects [][]byte
	// KeepAtMost, when positive, caps how long the run's payloads may be
	// kept after it finishes, because of a data class found in them.
	KeepAtMost time.Duration
}

// PayloadSealer seals run payloads on their way into the store and opens
// them on their way out. A store without one keeps payloads as given.
type PayloadSealer interface {
	Seal(ctx context.Context, f PayloadField, plaintext []byte) (Sealed, error)
	// Open returns ErrPayloadDestroyed (wrapped) when the field's key was
	// destroyed. A value that is not sealed at all (written before
	// payloads were sealed) comes back as it is.
	Open(ctx context.Context, f PayloadField, sealed []byte) ([]byte, error)
}

// PayloadPreparer is a PayloadSealer that can make a new run's keys
// ahead of its first write (Store.PreparePayloads).
type PayloadPreparer interface {
	Prepare(ctx context.Context, runID string) error
}

// Retention says how long each kind of a run's payloads is kept once the
// run has finished; a zero duration keeps that kind until the run is
// erased.
type Retention struct {
	Input, Steps, Output time.Duration
}

// Keep returns the duration of kind.
func (r Retention) Keep(kind string) time.Duration {
	switch kind {
	case PayloadInput:
		return r.Input
	case PayloadSteps:
		return r.Steps
	case PayloadOutput:
		return r.Output
	}
	return 0
}

// ExpiredPayload is one kind of one run whose time is up.
type ExpiredPayload struct {
	RunID, Kind string
	ExpiresAt   time.Time
}

// RetentionQueries keep track of how long runs' payloads live, and find
// runs by the subjects in them.
type RetentionQueries interface {
	// ListExpiredPayloads lists up to limit unpurged payload kinds of
	// finished runs whose expiry is at or before now, oldest first.
	ListExpiredPayloads(ctx context.Context, now time.Time, limit int) ([]ExpiredPayload, error)
	// PurgePayload deletes one kind of a run's payloads and marks it
	// purged at at; purging a kind already purged does nothing. It does
	// not touch keys: the caller destroys the kind's key first.
	PurgePayload(ctx context.Context, runID, kind string, at time.Time) error
	// RunsWithSubjects lists the runs whose payloads held any of the
	// subject digests, up to limit.
	RunsWithSubjects(ctx context.Context, digests [][]byte, limit int) ([]string, error)
	// PayloadPurges reports when each kind of a run was purged; a kind
	// not purged is absent.
	PayloadPurges(ctx context.Context, runID string) (map[string]time.Time, error)
}

// RunKey is a payload key as stored: wrapped under a vault key term.
// Wrapped is nil once the key is destroyed; the row stays, so that a
// destroyed key is told apart from one that never existed.
type RunKey struct {
	RunID, Kind string
	Term        uint32
	Wrapped     []byte
	CreatedAt   time.Time
	DestroyedAt *time.Time
}

// RunKeyRef names one payload key: a run's key of one kind.
type RunKeyRef struct{ RunID, Kind string }

// RunKeyStore keeps payload keys apart from the payloads: on SQLite in a
// file of its own, so that a copy of the database holds no key at all, and
// destroying a key leaves no trace of it in the file.
type RunKeyStore interface {
	// PutRunKeys stores keys that do not exist yet; when any of them
	// exists it stores none and fails with ErrConflict.
	PutRunKeys(ctx context.Context, keys []RunKey) error
	// GetRunKey fails with ErrNotFound when the key never existed.
	GetRunKey(ctx context.Context, runID, kind string) (RunKey, error)
	// DestroyRunKeys overwrites keys with nothing, all in one write,
	// keeping their rows; destroying one already destroyed or never made
	// records the destruction all the same.
	DestroyRunKeys(ctx context.Context, refs []RunKeyRef, at time.Time) error
	// ListRunKeysBelowTerm lists up to limit live keys wrapped under a term
	// below term, for a rewrap.
	ListRunKeysBelowTerm(ctx context.Context, term uint32, limit int) ([]RunKey, error)
	// RewrapRunKey replaces a live key's wrapping when it is still under
	// the term it was read with; it reports whether it did.
	RewrapRunKey(ctx context.Context, k RunKey, oldTerm uint32) (bool, error)
	Close() error
}
