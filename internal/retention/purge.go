package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/store"
)

// Recorder takes audit records; a purge or an erasure is recorded before
// anything is destroyed, and does not happen when it cannot be.
type Recorder interface {
	Append(ctx context.Context, recs ...audit.Record) ([]int64, error)
}

// Purger destroys expired payloads and erases subjects' runs.
//
// Every destruction goes key first, rows second: once a kind's key is
// destroyed the kind is erased (in this database and in every copy of it),
// and deleting its rows only tidies up. A purge interrupted at any point
// (kill -9 included) leaves each kind either untouched or with its key
// destroyed; the next purge finds it still unpurged and finishes it.
type Purger struct {
	Store  store.Store
	Cipher PayloadCipher
	Digest Digest
	Audit  Recorder
	Log    *slog.Logger
	// Now replaces time.Now in tests.
	Now func() time.Time
	// Batch is how many payload kinds one round destroys; default 500.
	Batch int
}

// PurgeResult counts what a purge did.
type PurgeResult struct {
	Purged int      `json:"purged"` // payload kinds destroyed
	Runs   []string `json:"runs"`   // the runs they belonged to
}

func (p *Purger) now() time.Time {
	if p.Now != nil {
		return p.Now().UTC()
	}
	return time.Now().UTC()
}

// PurgeExpired destroys every payload kind whose retention has run out.
func (p *Purger) PurgeExpired(ctx context.Context, actor string) (PurgeResult, error) {
	batch := p.Batch
	if batch <= 0 {
		batch = 500
	}
	var res PurgeResult
	seen := map[string]bool{}
	for {
		due, err := p.Store.ListExpiredPayloads(ctx, p.now(), batch)
		if err != nil {
			return res, fmt.Errorf("retention: purge: %w", err)
		}
		if len(due) == 0 {
			return res, nil
		}
		items := make([]any, len(due))
		for i, d := range due {
			items[i] = d.RunID + "/" + d.Kind
		}
		if _, err := p.Audit.Append(ctx, audit.Record{Actor: actor, Action: "runs.purge", Resource: "runs",
			Outcome: audit.Requested, Details: map[string]any{"payloads": items}}); err != nil {
			return res, fmt.Errorf("retention: purge: the audit record could not be written; nothing was purged: %w", err)
		}
		refs := make([]store.RunKeyRef, len(due))
		for i, d := range due {
			refs[i] = store.RunKeyRef{RunID: d.RunID, Kind: d.Kind}
		}
		if err := p.destroy(ctx, refs); err != nil {
			return res, err
		}
		for _, d := range due {
			res.Purged++
			if !seen[d.RunID] {
				seen[d.RunID] = true
				res.Runs = append(res.Runs, d.RunID)
			}
		}
		if _, err := p.Audit.Append(ctx, audit.Record{Actor: actor, Action: "runs.purge", Resource: "runs",
			Outcome: audit.OK, Details: map[string]any{"payloads": items}}); err != nil {
			return res, fmt.Errorf("retention: purge: %w", err)
		}
	}
}

// destroy erases payload kinds of runs: their keys in one write, then
// their rows in one transaction.
func (p *Purger) destroy(ctx context.Context, refs []store.RunKeyRef) error {
	if err := p.Cipher.Destroy(ctx, refs...); err != nil {
		return fmt.Errorf("retention: destroy %d payloads: %w", len(refs), err)
	}
	at := p.now()
	err := p.Store.InTx(ctx, func(tx store.Tx) error {
		for _, r := range refs {
			if err := tx.PurgePayload(ctx, r.RunID, r.Kind, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("retention: destroy %d payloads: %w", len(refs), err)
	}
	return nil
}

// MaxEraseRuns bounds the runs one erasure takes; a subject in more runs
// is erased by asking again.
const MaxEraseRuns = 10_000

// ErrNoSubject: no run holds the identifier; nothing was touched.
var ErrNoSubject = errors.New("retention: no run holds this identifier")

// EraseResult is what an erasure did.
type EraseResult struct {
	Runs []string `json:"runs"` // the runs erased
	// Cancelled lists the erased runs that had not finished; they were
	// cancelled first.
	Cancelled []string `json:"cancelled,omitempty"`
}

// Canceller stops a run that has not finished (engine.Engine.Cancel).
type Canceller interface {
	Cancel(ctx context.Context, runID string) (store.Run, error)
}

// Erase destroys every payload of every run holding subject: the runs are
// found through the HMAC index, never by reading payloads. A run still
// going is cancelled first. The audit trail keeps the subject only as an
// HMAC.
func (p *Purger) Erase(ctx context.Context, actor, subject string, cancel Canceller) (EraseResult, error) {
	if subject == "" || len(subject) > 1024 {
		return EraseResult{}, fmt.Errorf("retention: erase: the identifier must be 1 to 1024 bytes")
	}
	var digests [][]byte
	var forms []any
	for _, c := range candidates(subject) {
		digests = append(digests, p.Digest(c))
		forms = append(forms, audit.Sensitive(c))
	}
	runs, err := p.Store.RunsWithSubjects(ctx, digests, MaxEraseRuns)
	if err != nil {
		return EraseResult{}, fmt.Errorf("retention: erase: %w", err)
	}
	if len(runs) == 0 {
		return EraseResult{}, ErrNoSubject
	}
	// The subject's normalised forms, as AI call records hold them, so
	// that one HMAC (moat audit hmac) finds both.
	details := map[string]any{"subjects": forms, "runs": toAny(runs)}
	if _, err := p.Audit.Append(ctx, audit.Record{Actor: actor, Action: "runs.erase", Resource: "runs",
		Outcome: audit.Requested, Details: details}); err != nil {
		return EraseResult{}, fmt.Errorf("retention: erase: the audit record could not be written; nothing was erased: %w", err)
	}
	res := EraseResult{Runs: runs}
	for _, id := range runs {
		run, err := p.Store.GetRun(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return res, fmt.Errorf("retention: erase run %s: %w", id, err)
		}
		if err == nil && !run.Status.Final() && cancel != nil {
			if _, err := cancel.Cancel(ctx, id); err != nil {
				return res, fmt.Errorf("retention: erase run %s: cancel it: %w", id, err)
			}
			res.Cancelled = append(res.Cancelled, id)
		}
		refs := make([]store.RunKeyRef, 0, len(store.PayloadKinds))
		for _, kind := range store.PayloadKinds {
			refs = append(refs, store.RunKeyRef{RunID: id, Kind: kind})
		}
		if err := p.destroy(ctx, refs); err != nil {
			return res, err
		}
	}
	if _, err := p.Audit.Append(ctx, audit.Record{Actor: actor, Action: "runs.erase", Resource: "runs",
		Outcome: audit.OK, Details: details}); err != nil {
		return res, fmt.Errorf("retention: erase: %w", err)
	}
	return res, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Run purges every interval until ctx ends. Failures are logged, never
// with a payload, and retried at the next tick.
func (p *Purger) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := p.PurgeExpired(ctx, "system:retention")
		switch {
		case err != nil && ctx.Err() == nil && p.Log != nil:
			p.Log.Error("retention: purge failed; retrying at the next tick", "err", err)
		case res.Purged > 0 && p.Log != nil:
			p.Log.Info("retention: purged expired payloads", "payloads", res.Purged, "runs", len(res.Runs))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
