package storetest

import (
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
)

func testVaultState(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetVaultState(ctx)
	wantErr(t, err, store.ErrNotFound)

	st := store.VaultState{
		PrimaryTerm: 1, MinDecryptionTerm: 1, Check: []byte("check"),
		KDF:       store.KDFParams{Salt: []byte("0123456789abcdef"), Time: 3, MemoryKiB: 65536, Threads: 2},
		CreatedAt: at(0), UpdatedAt: at(0),
	}
	first := store.VaultKey{Term: 1, Wrapped: []byte("wrapped-1"), CreatedAt: at(0)}
	wantErr(t, s.InitVault(ctx, st, store.VaultKey{Term: 2, Wrapped: []byte("x"), CreatedAt: at(0)}), store.ErrInvalid)
	must(t, s.InitVault(ctx, st, first))
	got, err := s.GetVaultState(ctx)
	must(t, err)
	equal(t, "state", got, st)
	// A second node initialising at the same time loses and changes nothing.
	wantErr(t, s.InitVault(ctx, store.VaultState{PrimaryTerm: 1, Check: []byte("other"), CreatedAt: at(1)}, first), store.ErrConflict)
	got, err = s.GetVaultState(ctx)
	must(t, err)
	equal(t, "state after a second init", got, st)

	// Without a passphrase the KDF columns stay empty.
	locked, err := s.LockVaultState(ctx)
	must(t, err)
	equal(t, "locked", locked, st)

	must(t, s.InTx(ctx, func(tx store.Tx) error {
		st, err := tx.LockVaultState(ctx)
		if err != nil {
			return err
		}
		if err := tx.AddVaultKey(ctx, store.VaultKey{Term: 3, Wrapped: []byte("wrapped-3"), CreatedAt: at(time.Hour)}); err != nil {
			return err
		}
		if err := tx.AddVaultKey(ctx, store.VaultKey{Term: 2, Wrapped: []byte("wrapped-2"), CreatedAt: at(time.Minute)}); err != nil {
			return err
		}
		st.PrimaryTerm, st.MinDecryptionTerm, st.UpdatedAt = 3, 2, at(time.Hour)
		return tx.UpdateVaultState(ctx, st)
	}))
	got, err = s.GetVaultState(ctx)
	must(t, err)
	if got.PrimaryTerm != 3 || got.MinDecryptionTerm != 2 || !got.UpdatedAt.Equal(at(time.Hour)) || !got.CreatedAt.Equal(at(0)) || string(got.Check) != "check" {
		t.Fatalf("updated state %+v", got)
	}
	wantErr(t, s.AddVaultKey(ctx, store.VaultKey{Term: 2, Wrapped: []byte("again"), CreatedAt: at(0)}), store.ErrConflict)
	wantErr(t, s.AddVaultKey(ctx, store.VaultKey{Term: 0, Wrapped: []byte("zero"), CreatedAt: at(0)}), store.ErrInvalid)

	keys, err := s.ListVaultKeys(ctx)
	must(t, err)
	var terms []uint32
	for _, k := range keys {
		terms = append(terms, k.Term)
	}
	equal(t, "terms", terms, []uint32{1, 2, 3})
	equal(t, "term 2", keys[1], store.VaultKey{Term: 2, Wrapped: []byte("wrapped-2"), CreatedAt: at(time.Minute)})

	n, err := s.DeleteVaultKeysBelow(ctx, 3)
	must(t, err)
	if n != 2 {
		t.Fatalf("deleted %d keys, want 2", n)
	}
	keys, err = s.ListVaultKeys(ctx)
	must(t, err)
	if len(keys) != 1 || keys[0].Term != 3 {
		t.Fatalf("keys left: %+v", keys)
	}

	// A rolled-back transaction leaves the state as it was.
	_ = s.InTx(ctx, func(tx store.Tx) error {
		st, err := tx.LockVaultState(ctx)
		if err != nil {
			return err
		}
		st.PrimaryTerm = 9
		if err := tx.UpdateVaultState(ctx, st); err != nil {
			return err
		}
		return store.ErrConflict
	})
	got, err = s.GetVaultState(ctx)
	must(t, err)
	if got.PrimaryTerm != 3 {
		t.Fatalf("primary term %d after a rollback, want 3", got.PrimaryTerm)
	}
}

func secretRow(id, env, name string, version int, term uint32, when time.Time) store.Secret {
	return store.Secret{
		ID: id, Environment: env, Name: name, Version: version, KeyTerm: term,
		Ciphertext: []byte("ct-" + id + "-" + env), Bindings: store.SecretBindings{Connectors: []string{"openai"}},
		CreatedAt: when, UpdatedAt: when,
	}
}

func testSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := secretRow("sec_a", "prod", "OPENAI_API_KEY", 1, 1, at(0))
	a.Bindings = store.SecretBindings{Connectors: []string{"openai", "fallback"}, Hosts: []string{"api.openai.com", "*.openai.com:443"}, Models: []string{"gpt-4o"}}
	a.RotationPeriod, a.BlockExpired = 90*24*time.Hour, true
	must(t, s.CreateSecret(ctx, a))
	got, err := s.GetSecret(ctx, "prod", "OPENAI_API_KEY")
	must(t, err)
	equal(t, "created", got, a)

	wantErr(t, s.CreateSecret(ctx, secretRow("sec_b", "prod", "OPENAI_API_KEY", 1, 1, at(0))), store.ErrConflict)
	wantErr(t, s.CreateSecret(ctx, secretRow("sec_a", "dev", "OTHER", 1, 1, at(0))), store.ErrConflict)
	wantErr(t, s.CreateSecret(ctx, store.Secret{ID: "sec_x", Environment: "prod", Name: "X", Version: 1, KeyTerm: 1}), store.ErrInvalid)
	// The same name in another environment is another secret.
	b := secretRow("sec_b", "staging", "OPENAI_API_KEY", 1, 2, at(time.Minute))
	must(t, s.CreateSecret(ctx, b))
	c := secretRow("sec_c", "prod", "HELPDESK", 1, 1, at(2*time.Minute))
	must(t, s.CreateSecret(ctx, c))
	_, err = s.GetSecret(ctx, "dev", "OPENAI_API_KEY")
	wantErr(t, err, store.ErrNotFound)

	// A new version replaces the ciphertext and settings, keeping identity.
	a2 := a
	a2.Version, a2.KeyTerm, a2.Ciphertext, a2.UpdatedAt = 2, 2, []byte("ct-a-v2"), at(time.Hour)
	a2.Bindings, a2.RotationPeriod, a2.BlockExpired = store.SecretBindings{Connectors: []string{"openai"}}, 0, false
	a2.CreatedAt = at(time.Hour) // ignored: creation stays
	must(t, s.ReplaceSecret(ctx, a2))
	got, err = s.GetSecret(ctx, "prod", "OPENAI_API_KEY")
	must(t, err)
	a2.CreatedAt = at(0)
	equal(t, "replaced", got, a2)
	// Replacing with a version that is not the next one conflicts.
	stale := a2
	stale.Ciphertext = []byte("stale")
	wantErr(t, s.ReplaceSecret(ctx, stale), store.ErrConflict)
	stale.Version = 5
	wantErr(t, s.ReplaceSecret(ctx, stale), store.ErrConflict)

	list, err := s.ListSecrets(ctx, "prod")
	must(t, err)
	if len(list) != 2 || list[0].Name != "HELPDESK" || list[1].Name != "OPENAI_API_KEY" {
		t.Fatalf("prod list %+v", list)
	}
	for _, r := range list {
		if r.Ciphertext != nil {
			t.Fatalf("list carries ciphertext of %s", r.ID)
		}
	}
	all, err := s.ListSecrets(ctx, "")
	must(t, err)
	var ids []string
	for _, r := range all {
		ids = append(ids, r.ID)
	}
	equal(t, "all secrets by environment then name", ids, []string{"sec_c", "sec_a", "sec_b"})

	counts, err := s.CountSecretsByTerm(ctx)
	must(t, err)
	equal(t, "counts", counts, map[uint32]int{1: 1, 2: 2})

	below, err := s.ListSecretsBelowTerm(ctx, 3, "", 2)
	must(t, err)
	if len(below) != 2 || below[0].ID != "sec_a" || below[1].ID != "sec_b" || string(below[0].Ciphertext) != "ct-a-v2" {
		t.Fatalf("first page below term 3: %+v", below)
	}
	below, err = s.ListSecretsBelowTerm(ctx, 3, "sec_b", 2)
	must(t, err)
	if len(below) != 1 || below[0].ID != "sec_c" {
		t.Fatalf("second page below term 3: %+v", below)
	}
	below, err = s.ListSecretsBelowTerm(ctx, 2, "", 10)
	must(t, err)
	if len(below) != 1 || below[0].ID != "sec_c" {
		t.Fatalf("below term 2: %+v", below)
	}
	_, err = s.ListSecretsBelowTerm(ctx, 2, "", 0)
	wantErr(t, err, store.ErrInvalid)

	ok, err := s.RewrapSecret(ctx, "sec_c", 1, 1, 3, []byte("ct-c-term3"))
	must(t, err)
	if !ok {
		t.Fatal("rewrap of sec_c reported no change")
	}
	// Done already, or a version that moved on: nothing changes.
	for _, tc := range []struct {
		version  int
		from, to uint32
	}{{1, 1, 3}, {2, 3, 4}} {
		ok, err = s.RewrapSecret(ctx, "sec_c", tc.version, tc.from, tc.to, []byte("nope"))
		must(t, err)
		if ok {
			t.Fatalf("stale rewrap %+v reported a change", tc)
		}
	}
	got, err = s.GetSecret(ctx, "prod", "HELPDESK")
	must(t, err)
	if got.KeyTerm != 3 || string(got.Ciphertext) != "ct-c-term3" || got.Version != 1 {
		t.Fatalf("after rewrap %+v", got)
	}

	must(t, s.TouchSecret(ctx, "sec_c", at(3*time.Hour)))
	got, err = s.GetSecret(ctx, "prod", "HELPDESK")
	must(t, err)
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(at(3*time.Hour)) {
		t.Fatalf("last used %v", got.LastUsedAt)
	}
	wantErr(t, s.TouchSecret(ctx, "sec_missing", at(0)), store.ErrNotFound)

	use := store.SecretUse{SecretID: "sec_c", Workflow: "support/triage", Environment: "prod", At: at(time.Hour)}
	for i, want := range []bool{true, false} {
		first, err := s.RecordSecretUse(ctx, use)
		must(t, err)
		if first != want {
			t.Fatalf("use %d: first=%v, want %v", i, first, want)
		}
	}
	other := use
	other.Workflow = "ops/uptime"
	first, err := s.RecordSecretUse(ctx, other)
	must(t, err)
	if !first {
		t.Fatal("another workflow's first use was not first")
	}

	must(t, s.DeleteSecret(ctx, "prod", "HELPDESK"))
	_, err = s.GetSecret(ctx, "prod", "HELPDESK")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteSecret(ctx, "prod", "HELPDESK"), store.ErrNotFound)
	// Its uses went with it: a secret created again under the same id
	// starts with none.
	must(t, s.CreateSecret(ctx, secretRow("sec_c", "prod", "HELPDESK", 1, 3, at(4*time.Hour))))
	first, err = s.RecordSecretUse(ctx, use)
	must(t, err)
	if !first {
		t.Fatal("a use recorded before the delete survived it")
	}
}
