package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pressly/goose/v3"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlstore"
)

//go:embed keys_migrations/*.sql
var keyMigrations embed.FS

// keyPragmas add secure_delete to the store's: a destroyed key is
// overwritten with zeros in its page, not merely unlinked from the tree.
const keyPragmas = pragmas + "&_pragma=secure_delete(ON)"

// OpenRunKeys opens (creating if needed) the file of run payload keys at
// path, beside the database but not in it: a copy of the database holds
// no key, and a key destroyed here is gone from the file and its WAL.
func OpenRunKeys(ctx context.Context, path string) (store.RunKeyStore, error) {
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("store: open run keys %s: path must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: open run keys %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open run keys %s: %w", path, err)
	}
	f.Close()
	db, err := sql.Open("sqlite", path+"?"+keyPragmas+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open run keys %s: %w", path, err)
	}
	// One connection: reads are rare (the vault caches keys) and a
	// checkpoint that truncates the WAL must not wait on a reader.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	fsys, err := fs.Sub(keyMigrations, "keys_migrations")
	if err == nil {
		err = sqlstore.Migrate(ctx, db, goose.DialectSQLite3, fsys)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open run keys %s: %w", path, err)
	}
	truncateWAL := func(ctx context.Context) error {
		_, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
		return err
	}
	return sqlstore.NewRunKeys(sqlstore.Dialect{Name: store.SQLite, Classify: classify}, db, truncateWAL, true), nil
}
