// Package pgtest gives tests a Postgres store of their own: a fresh schema
// on the server named by MOAT_TEST_DATABASE_URL, dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the pgx driver

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/postgres"
)

// URLEnv names the variable holding the test server's URL.
const URLEnv = "MOAT_TEST_DATABASE_URL"

// URL returns the test server's URL, skipping the test when it is unset.
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(URLEnv)
	if u == "" {
		tb.Skipf("%s is unset; set it to a Postgres URL such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the Postgres tests", URLEnv)
	}
	return u
}

// IsolatedURL creates a schema of its own and returns base with its
// search_path set to it, so tests can run in parallel on one database.
func IsolatedURL(tb testing.TB, base string) string {
	tb.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "moat_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Error(err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open opens a store in a fresh schema; it is closed before the schema is
// dropped.
func Open(tb testing.TB) store.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), IsolatedURL(tb, URL(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}
