// Package sqlite opens Moat's embedded store: one SQLite file in WAL mode
// with a single writer connection and a query-only read pool.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// pragmas apply to every connection. busy_timeout comes first so that the
// pragmas after it wait for a lock instead of failing; WAL lets readers run
// beside the writer; synchronous=NORMAL is durable across application
// crashes in WAL mode and much cheaper than FULL.
const pragmas = "_pragma=busy_timeout(10000)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(NORMAL)" +
	"&_pragma=foreign_keys(ON)"

// Open opens (creating if needed) the database at path, migrates it and
// returns the store.
func Open(ctx context.Context, path string) (store.Store, error) {
	if strings.ContainsRune(path, '?') {
		// The driver reads everything after '?' as connection parameters.
		return nil, fmt.Errorf("store: open sqlite %s: path must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	// Create the file ourselves so it is private from the start; SQLite
	// gives its -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	f.Close()

	// BEGIN IMMEDIATE takes the write lock at the start of a transaction, so
	// a busy database makes the writer wait at BEGIN instead of failing a
	// later statement that cannot be retried.
	// Its connection keeps the statements of the queries it runs (see
	// cachingConnector): River's among them.
	connector, err := sqlite.NewConnector(path + "?" + pragmas + "&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	writer := sql.OpenDB(cachingConnector{connector})
	// SQLite has one writer at a time; one connection queues writers in
	// the pool rather than in busy-wait loops.
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	if err := migrate(ctx, writer); err != nil {
		writer.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}

	reader, err := sql.Open("sqlite", path+"?"+pragmas+"&_query_only=true")
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	readers := max(4, runtime.NumCPU())
	reader.SetMaxOpenConns(readers)
	reader.SetMaxIdleConns(readers)
	reader.SetConnMaxIdleTime(0)

	s := sqlstore.New(sqlstore.Dialect{Name: store.SQLite, Classify: classify, Prepare: true, OneWriter: true}, writer, reader)
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open sqlite %s: %w", path, err)
	}
	if err := s.PrepareStatements(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return sqlstore.Migrate(ctx, db, goose.DialectSQLite3, fsys)
}

// classify maps SQLite result codes to the store's sentinel errors.
func classify(err error) error {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return nil
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return store.ErrConflict
	}
	// Codes carry extended information in their upper bits.
	switch e.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN:
		return store.ErrUnavailable
	}
	return nil
}
