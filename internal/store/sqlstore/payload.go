package sqlstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// sealedTextPrefix marks a sealed value kept in a TEXT column (a task's
// title, a token's value), base64 after it.
const sealedTextPrefix = "moat:sealed:v1:"

var (
	// One row per payload kind (store.PayloadKinds), in one statement.
	stmtInsertRetention = define(`INSERT INTO run_retention (run_id, kind, keep_us) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)`)
	// A class found in a payload caps every kind: what it is kept in is
	// unknown once the steps have copied it around.
	stmtCapRetention = define(`UPDATE run_retention SET keep_us = ?
		WHERE run_id = ? AND purged_at IS NULL AND (keep_us = 0 OR keep_us > ?)`)
	stmtExpireRetention = define(`UPDATE run_retention SET expires_at = ? + keep_us
		WHERE run_id = ? AND keep_us > 0 AND expires_at IS NULL`)
	stmtInsertSubject = define(`INSERT INTO run_subjects (digest, run_id) VALUES (?, ?) ON CONFLICT DO NOTHING`)

	stmtListExpired = define(`SELECT run_id, kind, expires_at FROM run_retention
		WHERE purged_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?
		ORDER BY expires_at, run_id, kind LIMIT ?`)
	stmtMarkPurged = define(`INSERT INTO run_retention (run_id, kind, keep_us, expires_at, purged_at) VALUES (?, ?, 0, ?, ?)
		ON CONFLICT (run_id, kind) DO UPDATE SET purged_at = COALESCE(run_retention.purged_at, excluded.purged_at)`)
	stmtPurgeInput      = define(`UPDATE runs SET input = NULL WHERE id = ?`)
	stmtPurgeTokens     = define(`DELETE FROM run_tokens WHERE run_id = ?`)
	stmtPurgeSteps      = define(`UPDATE run_steps SET output = NULL WHERE run_id = ?`)
	stmtPurgeTasks      = define(`UPDATE tasks SET title = '', details = NULL, comment = '' WHERE run_id = ?`)
	stmtPurgeOutput     = define(`UPDATE runs SET output = NULL WHERE id = ?`)
	stmtCountPurged     = define(`SELECT COUNT(*) FROM run_retention WHERE run_id = ? AND purged_at IS NOT NULL`)
	stmtDeleteSubjects  = define(`DELETE FROM run_subjects WHERE run_id = ?`)
	stmtRunsWithSubject = define(`SELECT run_id FROM run_subjects WHERE digest = ? ORDER BY run_id LIMIT ?`)
	stmtPayloadPurges   = define(`SELECT kind, purged_at FROM run_retention WHERE run_id = ? AND purged_at IS NOT NULL`)
	stmtRunExists       = define(`SELECT 1 FROM runs WHERE id = ?`)
)

// seal seals one payload field when the store has a sealer; what was found
// in it is recorded by noteSealed once the run's row exists.
func (q *Queries) seal(ctx context.Context, f store.PayloadField, plaintext []byte) (store.Sealed, error) {
	if q.sealer == nil || plaintext == nil {
		return store.Sealed{Bytes: plaintext}, nil
	}
	s, err := q.sealer.Seal(ctx, f, plaintext)
	if err != nil {
		return store.Sealed{}, fmt.Errorf("store: seal %s of run %s: %w", f.Name, f.RunID, err)
	}
	return s, nil
}

// open opens one payload field. A field whose key was destroyed reads as
// nothing: it was purged or erased.
func (q *Queries) open(ctx context.Context, f store.PayloadField, sealed []byte) ([]byte, error) {
	if q.sealer == nil || sealed == nil {
		return sealed, nil
	}
	b, err := q.sealer.Open(ctx, f, sealed)
	if errors.Is(err, store.ErrPayloadDestroyed) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s of run %s: %w", f.Name, f.RunID, err)
	}
	return b, nil
}

// sealText seals a TEXT field; the empty string stays empty.
func (q *Queries) sealText(ctx context.Context, f store.PayloadField, plaintext string) (string, store.Sealed, error) {
	if q.sealer == nil || plaintext == "" {
		return plaintext, store.Sealed{}, nil
	}
	s, err := q.seal(ctx, f, []byte(plaintext))
	if err != nil {
		return "", store.Sealed{}, err
	}
	return sealedTextPrefix + base64.RawStdEncoding.EncodeToString(s.Bytes), s, nil
}

// openText opens a TEXT field. Text without the prefix was written before
// payloads were sealed and comes back as it is.
func (q *Queries) openText(ctx context.Context, f store.PayloadField, text string) (string, error) {
	rest, sealed := strings.CutPrefix(text, sealedTextPrefix)
	if q.sealer == nil || !sealed {
		return text, nil
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil {
		return "", fmt.Errorf("store: open %s of run %s: malformed sealed text", f.Name, f.RunID)
	}
	b, err := q.open(ctx, f, raw)
	return string(b), err
}

// noteSealed records the subjects found in sealed payloads of a run and
// caps the run's retention by the classes found.
func (q *Queries) noteSealed(ctx context.Context, runID string, sealed ...store.Sealed) error {
	var keep time.Duration
	for _, s := range sealed {
		for _, d := range s.Subjects {
			if _, err := q.exec(ctx, stmtInsertSubject, d, runID); err != nil {
				return q.fail(err, "record subjects of run %s", runID)
			}
		}
		if s.KeepAtMost > 0 && (keep == 0 || s.KeepAtMost < keep) {
			keep = s.KeepAtMost
		}
	}
	if keep > 0 {
		if _, err := q.exec(ctx, stmtCapRetention, keep.Microseconds(), runID, keep.Microseconds()); err != nil {
			return q.fail(err, "cap retention of run %s", runID)
		}
	}
	return nil
}

// insertRetention records how long each kind of a new run is kept.
func (q *Queries) insertRetention(ctx context.Context, runID string, r store.Retention) error {
	args := make([]any, 0, 3*len(store.PayloadKinds))
	for _, kind := range store.PayloadKinds {
		args = append(args, runID, kind, r.Keep(kind).Microseconds())
	}
	if _, err := q.exec(ctx, stmtInsertRetention, args...); err != nil {
		return q.fail(err, "record retention of run %s", runID)
	}
	return nil
}

func (q *Queries) ListExpiredPayloads(ctx context.Context, now time.Time, limit int) ([]store.ExpiredPayload, error) {
	if limit <= 0 || limit > 10_000 {
		return nil, fmt.Errorf("store: list expired payloads: limit must be 1..10000: %w", store.ErrInvalid)
	}
	rows, err := q.query(ctx, stmtListExpired, micros(now), limit)
	if err != nil {
		return nil, q.fail(err, "list expired payloads")
	}
	out, err := collect(rows, func(r scanner) (store.ExpiredPayload, error) {
		var e store.ExpiredPayload
		var at int64
		err := r.Scan(&e.RunID, &e.Kind, &at)
		e.ExpiresAt = fromMicros(at)
		return e, err
	})
	if err != nil {
		return nil, q.fail(err, "list expired payloads")
	}
	return out, nil
}

func (q *Queries) PurgePayload(ctx context.Context, runID, kind string, at time.Time) error {
	var stmts []stmt
	switch kind {
	case store.PayloadInput:
		stmts = []stmt{stmtPurgeInput, stmtPurgeTokens}
	case store.PayloadSteps:
		stmts = []stmt{stmtPurgeSteps, stmtPurgeTasks}
	case store.PayloadOutput:
		stmts = []stmt{stmtPurgeOutput}
	default:
		return fmt.Errorf("store: purge run %s: unknown payload kind %q: %w", runID, kind, store.ErrInvalid)
	}
	if err := q.queryRow(ctx, stmtRunExists, runID).Scan(new(int)); err != nil {
		return q.fail(err, "purge %s of run %s", kind, runID)
	}
	for _, s := range stmts {
		if _, err := q.exec(ctx, s, runID); err != nil {
			return q.fail(err, "purge %s of run %s", kind, runID)
		}
	}
	if _, err := q.exec(ctx, stmtMarkPurged, runID, kind, micros(at), micros(at)); err != nil {
		return q.fail(err, "purge %s of run %s", kind, runID)
	}
	// Once nothing of the run is left, neither is the way to find it.
	var purged int
	if err := q.queryRow(ctx, stmtCountPurged, runID).Scan(&purged); err != nil {
		return q.fail(err, "purge %s of run %s", kind, runID)
	}
	if purged == len(store.PayloadKinds) {
		if _, err := q.exec(ctx, stmtDeleteSubjects, runID); err != nil {
			return q.fail(err, "purge %s of run %s", kind, runID)
		}
	}
	return nil
}

func (q *Queries) RunsWithSubjects(ctx context.Context, digests [][]byte, limit int) ([]string, error) {
	if limit <= 0 || limit > 100_000 || len(digests) > 64 {
		return nil, fmt.Errorf("store: runs with subjects: limit must be 1..100000 and at most 64 digests: %w", store.ErrInvalid)
	}
	seen := map[string]bool{}
	var out []string
	for _, d := range digests {
		rows, err := q.query(ctx, stmtRunsWithSubject, d, limit)
		if err != nil {
			return nil, q.fail(err, "runs with subjects")
		}
		ids, err := collect(rows, func(r scanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil {
			return nil, q.fail(err, "runs with subjects")
		}
		for _, id := range ids {
			if !seen[id] && len(out) < limit {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	return out, nil
}

func (q *Queries) PayloadPurges(ctx context.Context, runID string) (map[string]time.Time, error) {
	rows, err := q.query(ctx, stmtPayloadPurges, runID)
	if err != nil {
		return nil, q.fail(err, "purges of run %s", runID)
	}
	type purge struct {
		kind string
		at   int64
	}
	list, err := collect(rows, func(r scanner) (purge, error) {
		var p purge
		return p, r.Scan(&p.kind, &p.at)
	})
	if err != nil {
		return nil, q.fail(err, "purges of run %s", runID)
	}
	out := make(map[string]time.Time, len(list))
	for _, p := range list {
		out[p.kind] = fromMicros(p.at)
	}
	return out, nil
}

func (s *Store) PurgePayload(ctx context.Context, runID, kind string, at time.Time) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.PurgePayload(ctx, runID, kind, at) })
}

func (s *Store) PreparePayloads(ctx context.Context, runID string) error {
	p, ok := s.sealer.(store.PayloadPreparer)
	if !ok {
		return nil
	}
	if err := p.Prepare(ctx, runID); err != nil {
		return fmt.Errorf("store: prepare payloads of run %s: %w", runID, err)
	}
	return nil
}

func (s *Store) SetPayloadSealer(ps store.PayloadSealer) {
	s.sealer = ps
	s.Queries.sealer = ps
}

// Payload fields, named as the sealer sees them.

func inputField(runID string) store.PayloadField {
	return store.PayloadField{RunID: runID, Kind: store.PayloadInput, Name: "input"}
}

func outputField(runID string) store.PayloadField {
	return store.PayloadField{RunID: runID, Kind: store.PayloadOutput, Name: "output"}
}

func stepField(runID, stepID string) store.PayloadField {
	return store.PayloadField{RunID: runID, Kind: store.PayloadSteps, Name: "step:" + stepID}
}

func taskField(runID, taskID, part string) store.PayloadField {
	return store.PayloadField{RunID: runID, Kind: store.PayloadSteps, Name: "task:" + taskID + ":" + part}
}

// A token's value is sealed deterministically so that the unique index on
// (run, class, value) still finds a value given twice.
func tokenField(runID, class string) store.PayloadField {
	return store.PayloadField{RunID: runID, Kind: store.PayloadInput, Name: "token:" + class, Deterministic: true}
}
