package vault

import (
	"fmt"
	"testing"

	"github.com/moatproject/moat/internal/store/pgtest"
)

// TestPostgres runs the vault's life on Postgres: set and resolve, a row
// swap, rotation, rewrap and retirement. Skipped without
// MOAT_TEST_DATABASE_URL (the store's conformance suite covers each query).
func TestPostgres(t *testing.T) {
	t.Parallel()
	st := pgtest.Open(t)
	e := newEnv(t)
	e.store = st
	e.v = e.open(t)
	ctx := t.Context()
	for i := range 5 {
		set(t, e.v, "prod", fmt.Sprintf("S%d", i), fmt.Sprintf("pg-value-%d", i), bound("c"))
	}
	a := access("prod", "c", "")
	if got := resolve(t, e.open(t), a, "prod", "S3"); got != "pg-value-3" {
		t.Fatalf("resolved %q", got)
	}
	if _, err := st.WriterDB().ExecContext(ctx, `UPDATE vault_secrets SET ciphertext = (SELECT ciphertext FROM vault_secrets WHERE name = 'S1') WHERE name = 'S2'`); err != nil {
		t.Fatal(err)
	}
	_, err := e.open(t).Resolve(ctx, a, "prod", "S2")
	wantErr(t, err, "pg-value", ErrCorrupt)
	if err := e.v.Delete(ctx, "prod", "S2"); err != nil {
		t.Fatal(err)
	}

	if _, err := e.v.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.v.SetMinDecryptionTerm(ctx, 2), "", ErrTermInUse)
	res, err := e.v.Rewrap(ctx, RewrapOptions{BatchSize: 3})
	if err != nil || res.Rewrapped != 4 {
		t.Fatalf("rewrap: %+v %v", res, err)
	}
	if err := e.v.SetMinDecryptionTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 3, 4} {
		if got := resolve(t, e.open(t), a, "prod", fmt.Sprintf("S%d", i)); got != fmt.Sprintf("pg-value-%d", i) {
			t.Fatalf("S%d resolved %q", i, got)
		}
	}
}
