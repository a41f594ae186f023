// Package postgres opens Moat's scale-out store on PostgreSQL through pgx's
// database/sql driver, one pool for reads and writes.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Open connects to the database at url, migrates it and returns the store.
// Runtime parameters in the URL reach the server, so
// "?search_path=moat" keeps the tables in schema moat.
func Open(ctx context.Context, url string) (store.Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		// The URL may carry a password: never echo it.
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if sentinel := classify(err); sentinel != nil {
			return nil, fmt.Errorf("store: open postgres: %w: %w", sentinel, err)
		}
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	return sqlstore.New(sqlstore.Dialect{Name: store.Postgres, Classify: classify}, db, db), nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	// Nodes starting together take turns through an advisory lock. Its id
	// is derived from the schema, so stores in different schemas of one
	// database (as the tests make them) do not wait for each other.
	var schema sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("read current schema: %w", err)
	}
	if !schema.Valid {
		return errors.New("no schema of the search_path exists")
	}
	h := fnv.New64a()
	h.Write([]byte("moat migrations " + schema.String))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64())),
		lock.WithLockTimeout(1, 300), // retry every second, for 5 minutes
	)
	if err != nil {
		return err
	}
	return sqlstore.Migrate(ctx, db, goose.DialectPostgres, fsys, goose.WithSessionLocker(locker))
}

// classify maps Postgres errors to the store's sentinel errors.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			return store.ErrConflict
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03": // cannot_connect_now
			return store.ErrUnavailable
		}
		return nil
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, driver.ErrBadConn) {
		return store.ErrUnavailable
	}
	return nil
}

// RunKeys returns the run payload key store of a Postgres store: the
// run_keys table of the same database, on the store's pool. A backup meant
// to outlive a purge must leave that table out.
func RunKeys(s store.Store) store.RunKeyStore {
	return sqlstore.NewRunKeys(sqlstore.Dialect{Name: store.Postgres, Classify: classify}, s.WriterDB(), nil, false)
}
