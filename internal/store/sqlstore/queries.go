// Package sqlstore implements store.Queries once, in SQL that SQLite and
// Postgres both accept, over database/sql. The dialect packages only open
// connections, run migrations and classify driver errors.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// DB is what queries need from *sql.DB and *sql.Tx.
type DB interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Dialect is what differs between the databases once the SQL is shared.
type Dialect struct {
	Name store.Dialect
	// Classify returns store.ErrConflict for a unique violation,
	// store.ErrUnavailable for a lock or connection failure, and nil for
	// anything else.
	Classify func(err error) error
	// Prepare keeps prepared statements for the pools' connections.
	Prepare bool
	// OneWriter says a write transaction already holds the database's only
	// write lock from its start (SQLite's BEGIN IMMEDIATE), so LockAudit
	// need not take another: a row lock there would only add a page write
	// to every audit commit.
	OneWriter bool
}

// Queries implements store.Queries over one DB: a read pool, a write pool or
// a transaction.
type Queries struct {
	db        DB
	sql       []string
	classify  func(error) error
	oneWriter bool
	// With prepared statements: prep is the pool's, tx the transaction
	// (if any) they run in.
	prep *prepared
	tx   *sql.Tx
	// sealer, when set, seals run payloads on write and opens them on
	// read (payload.go).
	sealer store.PayloadSealer
}

var _ store.Queries = (*Queries)(nil)

// NewQueries returns the queries of dialect d running on db.
func NewQueries(d Dialect, db DB) *Queries {
	text, ok := statements[d.Name]
	if !ok {
		panic(fmt.Sprintf("sqlstore: unknown dialect %q", d.Name))
	}
	return &Queries{db: db, sql: text, classify: d.Classify, oneWriter: d.OneWriter}
}

// statement returns the prepared statement for s, bound to q's
// transaction, or nil when q does not prepare.
func (q *Queries) statement(ctx context.Context, s stmt) (*sql.Stmt, error) {
	if q.prep == nil {
		return nil, nil
	}
	if q.tx == nil {
		return q.prep.get(ctx, s)
	}
	// Inside a transaction only statements prepared beforehand are used;
	// see prepareAll.
	if st := q.prep.lookup(s); st != nil {
		return q.tx.StmtContext(ctx, st), nil
	}
	return nil, nil
}

func (q *Queries) exec(ctx context.Context, s stmt, args ...any) (sql.Result, error) {
	st, err := q.statement(ctx, s)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return st.ExecContext(ctx, args...)
	}
	return q.db.ExecContext(ctx, q.sql[s], args...)
}

func (q *Queries) query(ctx context.Context, s stmt, args ...any) (*sql.Rows, error) {
	st, err := q.statement(ctx, s)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return st.QueryContext(ctx, args...)
	}
	return q.db.QueryContext(ctx, q.sql[s], args...)
}

func (q *Queries) queryRow(ctx context.Context, s stmt, args ...any) *sql.Row {
	if st, err := q.statement(ctx, s); err == nil && st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	// Without a prepared statement (or if preparing failed) the plain query
	// reports any error through the row.
	return q.db.QueryRowContext(ctx, q.sql[s], args...)
}

// fail wraps err with what was being done, turning sql.ErrNoRows into
// store.ErrNotFound and driver errors into the store's sentinels.
func (q *Queries) fail(err error, format string, args ...any) error {
	return failWith(q.classify, err, format, args...)
}

func failWith(classify func(error) error, err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: %s: %w", what, store.ErrNotFound)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if sentinel := classify(err); sentinel != nil {
		return fmt.Errorf("store: %s: %w: %w", what, sentinel, err)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

// mustAffect reports store.ErrNotFound when an UPDATE matched no row.
func (q *Queries) mustAffect(res sql.Result, format string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil {
		return q.fail(err, format, args...)
	}
	if n == 0 {
		return q.fail(sql.ErrNoRows, format, args...)
	}
	return nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// collect scans every row with scan, closing rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Times are stored as unix microseconds so that both databases compare and
// index them as plain integers.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// nullMicros maps a nil time to NULL.
func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// blob maps a nil slice to NULL; drivers disagree on how they bind it.
func blob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}
