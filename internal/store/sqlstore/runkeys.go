package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// RunKeys implements store.RunKeyStore over a pool of its own (SQLite: the
// keys file) or the store's (Postgres). Its statements are not defined with
// the store's, which are prepared on the main database where the table may
// not exist.
type RunKeys struct {
	db       *sql.DB
	classify func(error) error
	sql      runKeySQL
	// afterDestroy runs once a key is destroyed: SQLite truncates its WAL
	// there, so no copy of the key outlives the call.
	afterDestroy func(ctx context.Context) error
	closeDB      bool
}

type runKeySQL struct {
	insert, get, destroy, belowTerm, rewrap string
}

// NewRunKeys returns the key store of dialect d on db. afterDestroy may be
// nil; with closeDB, Close closes db.
func NewRunKeys(d Dialect, db *sql.DB, afterDestroy func(context.Context) error, closeDB bool) *RunKeys {
	rebind := func(q string) string { return q }
	if d.Name == store.Postgres {
		rebind = dollarPlaceholders
	}
	return &RunKeys{db: db, classify: d.Classify, afterDestroy: afterDestroy, closeDB: closeDB, sql: runKeySQL{
		insert: rebind(`INSERT INTO run_keys (run_id, kind, term, wrapped, created_at) VALUES (?, ?, ?, ?, ?)`),
		get:    rebind(`SELECT run_id, kind, term, wrapped, created_at, destroyed_at FROM run_keys WHERE run_id = ? AND kind = ?`),
		// The row is kept with no key so that a destroyed key reads as
		// destroyed, not as missing.
		destroy: rebind(`INSERT INTO run_keys (run_id, kind, term, wrapped, created_at, destroyed_at) VALUES (?, ?, 0, NULL, ?, ?)
			ON CONFLICT (run_id, kind) DO UPDATE SET wrapped = NULL, term = 0,
				destroyed_at = COALESCE(run_keys.destroyed_at, excluded.destroyed_at)`),
		belowTerm: rebind(`SELECT run_id, kind, term, wrapped, created_at, destroyed_at FROM run_keys
			WHERE term < ? AND wrapped IS NOT NULL ORDER BY term, run_id, kind LIMIT ?`),
		rewrap: rebind(`UPDATE run_keys SET term = ?, wrapped = ? WHERE run_id = ? AND kind = ? AND term = ? AND wrapped IS NOT NULL`),
	}}
}

var _ store.RunKeyStore = (*RunKeys)(nil)

func (k *RunKeys) fail(err error, format string, args ...any) error {
	return failWith(k.classify, err, format, args...)
}

func (k *RunKeys) PutRunKeys(ctx context.Context, keys []store.RunKey) error {
	tx, err := k.db.BeginTx(ctx, nil)
	if err != nil {
		return k.fail(err, "put run keys")
	}
	defer tx.Rollback()
	for _, key := range keys {
		if key.RunID == "" || key.Kind == "" || key.Term == 0 || len(key.Wrapped) == 0 {
			return fmt.Errorf("store: put run key: run, kind, term and key are required: %w", store.ErrInvalid)
		}
		if _, err := tx.ExecContext(ctx, k.sql.insert, key.RunID, key.Kind, int64(key.Term), key.Wrapped, micros(key.CreatedAt)); err != nil {
			return k.fail(err, "put %s key of run %s", key.Kind, key.RunID)
		}
	}
	if err := tx.Commit(); err != nil {
		return k.fail(err, "put run keys")
	}
	return nil
}

func scanRunKey(r scanner) (store.RunKey, error) {
	var key store.RunKey
	var term, created int64
	var destroyed sql.NullInt64
	err := r.Scan(&key.RunID, &key.Kind, &term, &key.Wrapped, &created, &destroyed)
	key.Term, key.CreatedAt, key.DestroyedAt = uint32(term), fromMicros(created), fromNullMicros(destroyed)
	return key, err
}

func (k *RunKeys) GetRunKey(ctx context.Context, runID, kind string) (store.RunKey, error) {
	key, err := scanRunKey(k.db.QueryRowContext(ctx, k.sql.get, runID, kind))
	if err != nil {
		return store.RunKey{}, k.fail(err, "%s key of run %s", kind, runID)
	}
	return key, nil
}

func (k *RunKeys) DestroyRunKeys(ctx context.Context, refs []store.RunKeyRef, at time.Time) error {
	tx, err := k.db.BeginTx(ctx, nil)
	if err != nil {
		return k.fail(err, "destroy run keys")
	}
	defer tx.Rollback()
	for _, r := range refs {
		if _, err := tx.ExecContext(ctx, k.sql.destroy, r.RunID, r.Kind, micros(at), micros(at)); err != nil {
			return k.fail(err, "destroy %s key of run %s", r.Kind, r.RunID)
		}
	}
	if err := tx.Commit(); err != nil {
		return k.fail(err, "destroy run keys")
	}
	if k.afterDestroy != nil {
		if err := k.afterDestroy(ctx); err != nil {
			return k.fail(err, "destroy run keys")
		}
	}
	return nil
}

func (k *RunKeys) ListRunKeysBelowTerm(ctx context.Context, term uint32, limit int) ([]store.RunKey, error) {
	rows, err := k.db.QueryContext(ctx, k.sql.belowTerm, int64(term), limit)
	if err != nil {
		return nil, k.fail(err, "run keys below term %d", term)
	}
	keys, err := collect(rows, scanRunKey)
	if err != nil {
		return nil, k.fail(err, "run keys below term %d", term)
	}
	return keys, nil
}

func (k *RunKeys) RewrapRunKey(ctx context.Context, key store.RunKey, oldTerm uint32) (bool, error) {
	res, err := k.db.ExecContext(ctx, k.sql.rewrap, int64(key.Term), key.Wrapped, key.RunID, key.Kind, int64(oldTerm))
	if err != nil {
		return false, k.fail(err, "rewrap %s key of run %s", key.Kind, key.RunID)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, k.fail(err, "rewrap %s key of run %s", key.Kind, key.RunID)
	}
	return n == 1, nil
}

func (k *RunKeys) Close() error {
	if !k.closeDB {
		return nil
	}
	if err := k.db.Close(); err != nil {
		return fmt.Errorf("store: close run keys: %w", err)
	}
	return nil
}
