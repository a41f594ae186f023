package postgres_test

import (
	"errors"
	"testing"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/pgtest"
	"github.com/moatproject/moat/internal/store/postgres"
	"github.com/moatproject/moat/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	pgtest.URL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return pgtest.Open(t) })
}

func TestReopenKeepsData(t *testing.T) {
	u := pgtest.IsolatedURL(t, pgtest.URL(t))
	s, err := postgres.Open(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.UpsertProject(t.Context(), store.Project{ID: "p-1", Name: "support"}); err != nil {
		t.Fatal(err)
	}
	// A second store on the same schema, as a second node would open it:
	// migrations find nothing to do and the data is there.
	again, err := postgres.Open(t.Context(), u)
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
	_, err := postgres.Open(t.Context(), "postgres://moat@127.0.0.1:1/moat?sslmode=disable&connect_timeout=5")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open of an unreachable server: %v, want ErrUnavailable", err)
	}
}

func TestRunKeysConformance(t *testing.T) {
	pgtest.URL(t)
	storetest.RunKeys(t, func(t *testing.T) store.RunKeyStore { return postgres.RunKeys(pgtest.Open(t)) })
}
