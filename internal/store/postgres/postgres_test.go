package postgres

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"testing"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/storetest"
)

const urlEnv = "MOAT_TEST_DATABASE_URL"

func databaseURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv(urlEnv)
	if u == "" {
		t.Skipf("%s is unset; set it to a Postgres URL such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the Postgres store tests", urlEnv)
	}
	return u
}

// openIsolated opens a store in a schema of its own, dropped when the test
// ends, so tests can run in parallel on one database.
func openIsolated(t *testing.T, base string) store.Store {
	t.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	schema := "moat_test_" + hex.EncodeToString(randomBytes(t, 6))
	if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Error(err)
		}
		admin.Close()
	})

	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	s, err := Open(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the schema's cleanup, so it runs before it.
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	base := databaseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openIsolated(t, base) })
}

func TestReopenKeepsData(t *testing.T) {
	base := databaseURL(t)
	s := openIsolated(t, base)
	if _, err := s.UpsertProject(t.Context(), store.Project{ID: "p-1", Name: "support"}); err != nil {
		t.Fatal(err)
	}
	// A second store on the same schema, as a second node would open it:
	// migrations find nothing to do and the data is there.
	u, _ := url.Parse(base)
	q := u.Query()
	var schema string
	if err := s.WriterDB().QueryRowContext(t.Context(), "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	again, err := Open(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.GetProject(t.Context(), "support"); err != nil {
		t.Fatal(err)
	}
	if again.Dialect() != store.Postgres {
		t.Fatalf("Dialect() = %q", again.Dialect())
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	// Nothing listens on port 1 of the loopback address.
	_, err := Open(t.Context(), "postgres://moat@127.0.0.1:1/moat?sslmode=disable&connect_timeout=5")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open of an unreachable server: %v, want ErrUnavailable", err)
	}
}
