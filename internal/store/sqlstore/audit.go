package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/moatproject/moat/internal/store"
)

// maxAuditPage bounds one ListAudit.
const maxAuditPage = 10_000

const auditCols = `seq, at, actor, action, resource, outcome, details, hashes`

var (
	stmtLockAudit = define(`UPDATE audit_lock SET id = 1 WHERE id = 1`)
	stmtAuditSize = define(`SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_records`)
	// A record whose seq another writer is inserting at the same moment
	// (one that did not take the audit lock) is skipped, as the trigger
	// skips one that does not continue the log, rather than failing: in
	// Postgres a failed statement ends the transaction.
	stmtAppendAuditOne = define(auditInsert(1) + ` ON CONFLICT (seq) DO NOTHING`)
	// After its first record, a batch goes in as few statements as these
	// sizes allow, largest first.
	stmtAppendAuditRows = []struct {
		rows int
		stmt stmt
	}{
		{64, define(auditInsert(64))},
		{8, define(auditInsert(8))},
		{1, stmtAppendAuditOne},
	}
	stmtListAudit   = define(`SELECT ` + auditCols + ` FROM audit_records WHERE seq >= ? ORDER BY seq LIMIT ?`)
	stmtAuditHashes = define(`SELECT hashes FROM audit_records WHERE seq = ?`)

	stmtAddAuditCheckpoint    = define(`INSERT INTO audit_checkpoints (size, note, created_at) VALUES (?, ?, ?)`)
	stmtListAuditCheckpoints  = define(`SELECT size, note, created_at FROM audit_checkpoints WHERE size >= ? ORDER BY size`)
	stmtLatestAuditCheckpoint = define(`SELECT size, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1`)

	stmtAuditSinkCursor    = define(`SELECT next FROM audit_sink_cursors WHERE sink = ?`)
	stmtSetAuditSinkCursor = define(`INSERT INTO audit_sink_cursors (sink, next) VALUES (?, ?)
		ON CONFLICT (sink) DO UPDATE SET next = excluded.next`)
)

// auditRecordCols is the number of columns (and arguments) of one record.
const auditRecordCols = 8

// auditInsert is the insert of n records.
func auditInsert(n int) string {
	row := "(?" + strings.Repeat(", ?", auditRecordCols-1) + ")"
	return `INSERT INTO audit_records (` + auditCols + `) VALUES ` + row + strings.Repeat(", "+row, n-1)
}

func appendAuditArgs(args []any, r *store.AuditRecord) []any {
	return append(args, r.Seq, micros(r.Time), r.Actor, r.Action, r.Resource, r.Outcome, string(r.Details), r.Hashes)
}

// AppendAudit relies on the database to refuse a record that does not
// continue the log: a trigger (migration 00006) skips it, which costs less
// than a query of its own and leaves the transaction usable. So the first
// record goes in alone, and if it was skipped nothing was added. The
// check within the batch is the caller's, made here again. The rest of
// the batch cannot meet another writer: one would have to see the first
// record, which is not committed.
func (q *Queries) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	first := recs[0].Seq
	for i, r := range recs {
		if r.Seq != first+int64(i) {
			return fmt.Errorf("store: append audit records: seq %d follows %d: %w", r.Seq, first+int64(i)-1, store.ErrInvalid)
		}
	}
	args := make([]any, 0, auditRecordCols*min(len(recs), stmtAppendAuditRows[0].rows))
	n, err := q.appendAuditRows(ctx, stmtAppendAuditOne, recs[:1], args)
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("store: append audit record %d: the log does not end at %d: %w", first, first-1, store.ErrConflict)
	}
	for rest := recs[1:]; len(rest) > 0; {
		for _, size := range stmtAppendAuditRows {
			if len(rest) < size.rows {
				continue
			}
			n, err := q.appendAuditRows(ctx, size.stmt, rest[:size.rows], args)
			if err != nil {
				return err
			}
			if n != int64(size.rows) {
				// Only a writer that does not take the audit lock could
				// have got in between; what is added is no longer one
				// batch, so the transaction must not commit.
				return fmt.Errorf("store: append audit records %d..%d: %d of them do not continue the log", rest[0].Seq, rest[size.rows-1].Seq, int64(size.rows)-n)
			}
			rest = rest[size.rows:]
			break
		}
	}
	return nil
}

// appendAuditRows inserts recs with s, an insert of that many records, and
// returns how many the database added.
func (q *Queries) appendAuditRows(ctx context.Context, s stmt, recs []store.AuditRecord, args []any) (int64, error) {
	args = args[:0]
	for i := range recs {
		args = appendAuditArgs(args, &recs[i])
	}
	res, err := q.exec(ctx, s, args...)
	if err != nil {
		return 0, q.fail(err, "append audit records %d..%d", recs[0].Seq, recs[len(recs)-1].Seq)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, q.fail(err, "append audit records %d..%d", recs[0].Seq, recs[len(recs)-1].Seq)
	}
	return n, nil
}

func (q *Queries) LockAudit(ctx context.Context) error {
	if q.tx == nil {
		if _, ok := q.db.(*sql.Tx); !ok {
			return fmt.Errorf("store: lock the audit log: only inside a transaction: %w", store.ErrInvalid)
		}
	}
	if q.oneWriter {
		return nil
	}
	if _, err := q.exec(ctx, stmtLockAudit); err != nil {
		return q.fail(err, "lock the audit log")
	}
	return nil
}

func (q *Queries) AuditSize(ctx context.Context) (int64, error) {
	var n int64
	if err := q.queryRow(ctx, stmtAuditSize).Scan(&n); err != nil {
		return 0, q.fail(err, "count audit records")
	}
	return n, nil
}

func (q *Queries) ListAudit(ctx context.Context, from int64, limit int) ([]store.AuditRecord, error) {
	if limit < 1 || limit > maxAuditPage {
		return nil, fmt.Errorf("store: list audit records: limit %d is outside 1..%d: %w", limit, maxAuditPage, store.ErrInvalid)
	}
	rows, err := q.query(ctx, stmtListAudit, from, limit)
	if err != nil {
		return nil, q.fail(err, "list audit records from %d", from)
	}
	out := make([]store.AuditRecord, 0, min(limit, 1024))
	out, err = collectInto(rows, out, func(r scanner) (store.AuditRecord, error) {
		var a store.AuditRecord
		var at int64
		var details string
		err := r.Scan(&a.Seq, &at, &a.Actor, &a.Action, &a.Resource, &a.Outcome, &details, &a.Hashes)
		a.Time, a.Details = fromMicros(at), []byte(details)
		return a, err
	})
	if err != nil {
		return nil, q.fail(err, "list audit records from %d", from)
	}
	return out, nil
}

// collectInto is collect appending to out.
func collectInto[T any](rows *sql.Rows, out []T, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (q *Queries) AuditHashes(ctx context.Context, seq int64) ([]byte, error) {
	var h []byte
	if err := q.queryRow(ctx, stmtAuditHashes, seq).Scan(&h); err != nil {
		return nil, q.fail(err, "hashes of audit record %d", seq)
	}
	return h, nil
}

func (q *Queries) AddAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) error {
	if c.Size < 0 || len(c.Note) == 0 {
		return fmt.Errorf("store: add audit checkpoint %d: a size and a note are required: %w", c.Size, store.ErrInvalid)
	}
	if _, err := q.exec(ctx, stmtAddAuditCheckpoint, c.Size, string(c.Note), micros(c.CreatedAt)); err != nil {
		return q.fail(err, "add audit checkpoint %d", c.Size)
	}
	return nil
}

func scanCheckpoint(r scanner) (store.AuditCheckpoint, error) {
	var c store.AuditCheckpoint
	var note string
	var created int64
	err := r.Scan(&c.Size, &note, &created)
	c.Note, c.CreatedAt = []byte(note), fromMicros(created)
	return c, err
}

func (q *Queries) ListAuditCheckpoints(ctx context.Context, minSize int64) ([]store.AuditCheckpoint, error) {
	rows, err := q.query(ctx, stmtListAuditCheckpoints, minSize)
	if err != nil {
		return nil, q.fail(err, "list audit checkpoints")
	}
	cs, err := collect(rows, scanCheckpoint)
	if err != nil {
		return nil, q.fail(err, "list audit checkpoints")
	}
	return cs, nil
}

func (q *Queries) LatestAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error) {
	c, err := scanCheckpoint(q.queryRow(ctx, stmtLatestAuditCheckpoint))
	if err != nil {
		return store.AuditCheckpoint{}, q.fail(err, "latest audit checkpoint")
	}
	return c, nil
}

func (q *Queries) AuditSinkCursor(ctx context.Context, sink string) (int64, error) {
	var n int64
	if err := q.queryRow(ctx, stmtAuditSinkCursor, sink).Scan(&n); err != nil {
		return 0, q.fail(err, "cursor of audit sink %q", sink)
	}
	return n, nil
}

func (q *Queries) SetAuditSinkCursor(ctx context.Context, sink string, next int64) error {
	if sink == "" || next < 0 {
		return fmt.Errorf("store: set audit sink cursor: a sink name and a cursor >= 0 are required: %w", store.ErrInvalid)
	}
	if _, err := q.exec(ctx, stmtSetAuditSinkCursor, sink, next); err != nil {
		return q.fail(err, "set cursor of audit sink %q", sink)
	}
	return nil
}

// The write methods below shadow those of the embedded read-pool Queries.

// AppendAudit of one record is one statement on the writer, which the
// database commits by itself (SQLite retries a busy lock for it as for
// BEGIN IMMEDIATE); more records take a transaction, so that they are
// added together or not at all.
func (s *Store) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	if len(recs) != 1 {
		return s.InTx(ctx, func(tx store.Tx) error { return tx.AppendAudit(ctx, recs) })
	}
	q := NewQueries(s.dialect, s.writer)
	q.prep = s.writerStmts
	return q.AppendAudit(ctx, recs)
}

func (s *Store) AddAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.AddAuditCheckpoint(ctx, c) })
}

func (s *Store) SetAuditSinkCursor(ctx context.Context, sink string, next int64) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.SetAuditSinkCursor(ctx, sink, next) })
}
