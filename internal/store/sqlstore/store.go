package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// Store implements store.Store over a writer pool and a read pool, which
// may be the same *sql.DB. Reads go to the read pool; each write made
// outside InTx runs in a transaction of its own on the writer, because on
// SQLite the read pool is query-only.
type Store struct {
	*Queries // reads, on the read pool
	dialect  Dialect
	writer   *sql.DB
	reader   *sql.DB
	// Prepared statements of each pool, when the dialect wants them.
	writerStmts, readerStmts *prepared
	sealer                   store.PayloadSealer
}

var _ store.Store = (*Store)(nil)

// New returns a Store. It takes ownership of both pools: Close closes them.
func New(d Dialect, writer, reader *sql.DB) *Store {
	s := &Store{Queries: NewQueries(d, reader), dialect: d, writer: writer, reader: reader}
	if d.Prepare {
		s.writerStmts = newPrepared(writer, s.sql)
		s.readerStmts = s.writerStmts
		if reader != writer {
			s.readerStmts = newPrepared(reader, s.sql)
		}
		s.Queries.prep = s.readerStmts
	}
	return s
}

// PrepareStatements prepares the writer's statements; call it once after
// migrations, before the store is used. Without it transactions run their
// statements unprepared.
func (s *Store) PrepareStatements(ctx context.Context) error {
	if s.writerStmts == nil {
		return nil
	}
	if err := s.writerStmts.prepareAll(ctx); err != nil {
		return s.fail(err, "prepare statements")
	}
	return nil
}

type tx struct {
	*Queries
	tx *sql.Tx
}

func (t *tx) SQL() *sql.Tx { return t.tx }

func (s *Store) InTx(ctx context.Context, fn func(tx store.Tx) error) error {
	sqlTx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(err, "begin transaction")
	}
	// Rolls back when fn fails or panics; after Commit it does nothing.
	defer sqlTx.Rollback()
	q := NewQueries(s.dialect, sqlTx)
	q.prep, q.tx, q.sealer = s.writerStmts, sqlTx, s.sealer
	if err := fn(&tx{Queries: q, tx: sqlTx}); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return s.fail(err, "commit")
	}
	return nil
}

func (s *Store) WriterDB() *sql.DB { return s.writer }

func (s *Store) Dialect() store.Dialect { return s.dialect.Name }

func (s *Store) Ping(ctx context.Context) error {
	if err := s.writer.PingContext(ctx); err != nil {
		return s.fail(err, "ping")
	}
	if s.reader != s.writer {
		if err := s.reader.PingContext(ctx); err != nil {
			return s.fail(err, "ping read pool")
		}
	}
	return nil
}

func (s *Store) Close() error {
	for _, p := range []*prepared{s.readerStmts, s.writerStmts} {
		if p != nil {
			p.close()
		}
	}
	var errs []error
	if s.reader != s.writer {
		errs = append(errs, s.reader.Close())
	}
	errs = append(errs, s.writer.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// The write methods below shadow those of the embedded read-pool Queries.

func (s *Store) UpsertProject(ctx context.Context, p store.Project) (out store.Project, err error) {
	err = s.InTx(ctx, func(tx store.Tx) error {
		out, err = tx.UpsertProject(ctx, p)
		return err
	})
	return out, err
}

func (s *Store) SaveWorkflowVersion(ctx context.Context, v store.NewVersion) (wf store.Workflow, ver store.Version, created bool, err error) {
	err = s.InTx(ctx, func(tx store.Tx) error {
		wf, ver, created, err = tx.SaveWorkflowVersion(ctx, v)
		return err
	})
	return wf, ver, created, err
}

func (s *Store) CreateRun(ctx context.Context, r store.Run) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.CreateRun(ctx, r) })
}

func (s *Store) UpdateRun(ctx context.Context, r store.Run) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.UpdateRun(ctx, r) })
}

func (s *Store) UpsertStep(ctx context.Context, st store.Step) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.UpsertStep(ctx, st) })
}

func (s *Store) UpsertAttempt(ctx context.Context, a store.Attempt) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.UpsertAttempt(ctx, a) })
}

func (s *Store) CreateTask(ctx context.Context, t store.Task) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.CreateTask(ctx, t) })
}

func (s *Store) DecideTask(ctx context.Context, id string, status store.TaskStatus, by, comment string, at time.Time) (t store.Task, err error) {
	err = s.InTx(ctx, func(tx store.Tx) error {
		t, err = tx.DecideTask(ctx, id, status, by, comment, at)
		return err
	})
	return t, err
}

func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.CreateToken(ctx, t) })
}

func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	return s.InTx(ctx, func(tx store.Tx) error { return tx.TouchToken(ctx, id, at) })
}
