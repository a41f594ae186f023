package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
)

func resource(kind, name, spec string, when time.Time) store.Resource {
	return store.Resource{Kind: kind, Name: name, Spec: []byte(spec), CreatedAt: when, UpdatedAt: when}
}

func testResources(t *testing.T, s store.Store) {
	ctx := t.Context()
	put := func(r store.Resource) (store.Resource, bool) {
		t.Helper()
		out, changed, err := s.PutResource(ctx, r)
		must(t, err)
		return out, changed
	}

	created, changed := put(resource("Vendor", "openai", `{"name":"openai","location":"managed-service"}`, at(0)))
	if !changed || created.Hash == "" || !created.CreatedAt.Equal(at(0)) || !created.UpdatedAt.Equal(at(0)) {
		t.Fatalf("first put: changed=%v %+v", changed, created)
	}
	same, changed := put(resource("Vendor", "openai", `{"name":"openai","location":"managed-service"}`, at(time.Minute)))
	if changed {
		t.Fatal("putting the same spec again reported a change")
	}
	equal(t, "unchanged put", same, created)

	updated, changed := put(resource("Vendor", "openai", `{"name":"openai","location":"private-cloud"}`, at(2*time.Minute)))
	if !changed || updated.Hash == created.Hash {
		t.Fatalf("changed spec: changed=%v hash %s → %s", changed, created.Hash, updated.Hash)
	}
	if !updated.CreatedAt.Equal(at(0)) || !updated.UpdatedAt.Equal(at(2*time.Minute)) {
		t.Fatalf("update kept created %v / set updated %v", updated.CreatedAt, updated.UpdatedAt)
	}
	got, err := s.GetResource(ctx, "Vendor", "openai")
	must(t, err)
	equal(t, "get after update", got, updated)
	if string(got.Spec) != `{"name":"openai","location":"private-cloud"}` {
		t.Fatalf("spec = %s", got.Spec)
	}

	// An explicit hash is kept as given.
	withHash, _ := put(store.Resource{Kind: "Model", Name: "fast", Spec: []byte(`{"name":"fast"}`), Hash: "h1", CreatedAt: at(0)})
	if withHash.Hash != "h1" || !withHash.UpdatedAt.Equal(at(0)) {
		t.Fatalf("explicit hash: %+v", withHash)
	}
	put(resource("Connector", "b", `{"name":"b"}`, at(0)))
	put(resource("Connector", "a", `{"name":"a"}`, at(0)))

	all, err := s.ListResources(ctx, "")
	must(t, err)
	var names []string
	for _, r := range all {
		names = append(names, r.Kind+"/"+r.Name)
	}
	equal(t, "all resources", names, []string{"Connector/a", "Connector/b", "Model/fast", "Vendor/openai"})
	conns, err := s.ListResources(ctx, "Connector")
	must(t, err)
	if len(conns) != 2 || conns[0].Name != "a" || conns[1].Name != "b" {
		t.Fatalf("connectors: %+v", conns)
	}
	none, err := s.ListResources(ctx, "Nothing")
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("unknown kind listed %+v", none)
	}

	must(t, s.DeleteResource(ctx, "Connector", "a"))
	wantErr(t, s.DeleteResource(ctx, "Connector", "a"), store.ErrNotFound)
	_, err = s.GetResource(ctx, "Connector", "a")
	wantErr(t, err, store.ErrNotFound)
	// Kinds are separate name spaces.
	wantErr(t, s.DeleteResource(ctx, "Vendor", "b"), store.ErrNotFound)

	_, _, err = s.PutResource(ctx, resource("Vendor", "broken", `{"name":`, at(0)))
	wantErr(t, err, store.ErrInvalid)
	_, _, err = s.PutResource(ctx, resource("", "x", `{}`, at(0)))
	wantErr(t, err, store.ErrInvalid)
}

// testResourcesInTx: a put inside a transaction that fails is rolled back,
// and reads inside a transaction see its own writes.
func testResourcesInTx(t *testing.T, s store.Store) {
	ctx := t.Context()
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx store.Tx) error {
		if _, _, err := tx.PutResource(ctx, resource("Vendor", "v", `{}`, at(0))); err != nil {
			return err
		}
		rs, err := tx.ListResources(ctx, "Vendor")
		if err != nil {
			return err
		}
		if len(rs) != 1 {
			t.Errorf("inside the transaction: %d vendors, want 1", len(rs))
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v", err)
	}
	_, err = s.GetResource(ctx, "Vendor", "v")
	wantErr(t, err, store.ErrNotFound)

	must(t, s.InTx(ctx, func(tx store.Tx) error {
		_, _, err := tx.PutResource(ctx, resource("Vendor", "v", `{}`, at(0)))
		if err != nil {
			return err
		}
		return tx.DeleteResource(ctx, "Vendor", "v")
	}))
	_, err = s.GetResource(ctx, "Vendor", "v")
	wantErr(t, err, store.ErrNotFound)
}

func testRunTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	tok := func(token, class, value string, d time.Duration) store.RunToken {
		return store.RunToken{Token: token, Class: class, Value: value, CreatedAt: at(d)}
	}
	load := func(run string) []store.RunToken {
		t.Helper()
		ts, err := s.LoadRunTokens(ctx, run)
		must(t, err)
		return ts
	}
	if ts := load("run-1"); len(ts) != 0 {
		t.Fatalf("new run has tokens %+v", ts)
	}
	first := []store.RunToken{tok("<EMAIL_2>", "email", "b@example.com", time.Second), tok("<EMAIL_1>", "email", "a@example.com", time.Second)}
	must(t, s.AddRunTokens(ctx, "run-1", first))
	want := []store.RunToken{first[1], first[0]} // same time: by token
	equal(t, "tokens", load("run-1"), want)

	// Adding the same tokens again, with a new one, adds only the new one.
	must(t, s.AddRunTokens(ctx, "run-1", []store.RunToken{first[0], tok("<PHONE_1>", "phone", "+33 6 12 34 56 78", 0)}))
	want = append([]store.RunToken{tok("<PHONE_1>", "phone", "+33 6 12 34 56 78", 0)}, want...)
	equal(t, "tokens after re-add", load("run-1"), want)

	conflicts := map[string][]store.RunToken{
		"token taken for another value":   {tok("<EMAIL_1>", "email", "c@example.com", 0)},
		"token taken for another class":   {tok("<EMAIL_1>", "person", "a@example.com", 0)},
		"value already under other token": {tok("<EMAIL_9>", "email", "a@example.com", 0)},
		"twice in one call":               {tok("<EMAIL_7>", "email", "x@example.com", 0), tok("<EMAIL_7>", "email", "y@example.com", 0)},
		"one value two tokens in a call":  {tok("<EMAIL_7>", "email", "x@example.com", 0), tok("<EMAIL_8>", "email", "x@example.com", 0)},
	}
	for name, batch := range conflicts {
		// A fresh token first: it must not be added when the call fails.
		batch = append([]store.RunToken{tok("<NAME_1>", "person", "Ada", 0)}, batch...)
		err := s.AddRunTokens(ctx, "run-1", batch)
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("%s: got %v, want a conflict", name, err)
		}
		for _, v := range []string{"@example.com", "Ada"} {
			if strings.Contains(err.Error(), v) {
				t.Fatalf("%s: the error %q carries a value", name, err)
			}
		}
		equal(t, name+": tokens after the refused call", load("run-1"), want)
	}

	// Another run has tokens of its own: the same token and value are free.
	must(t, s.AddRunTokens(ctx, "run-2", []store.RunToken{tok("<EMAIL_1>", "email", "z@example.com", 0), tok("<EMAIL_2>", "email", "a@example.com", 0)}))
	if ts := load("run-2"); len(ts) != 2 {
		t.Fatalf("run-2 has %d tokens", len(ts))
	}
	equal(t, "run-1 unchanged", load("run-1"), want)

	// Inside a transaction that rolls back, nothing stays.
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx store.Tx) error {
		if err := tx.AddRunTokens(ctx, "run-3", []store.RunToken{tok("<X_1>", "x", "v", 0)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v", err)
	}
	if ts := load("run-3"); len(ts) != 0 {
		t.Fatalf("rolled back tokens stayed: %+v", ts)
	}

	must(t, s.AddRunTokens(ctx, "run-1", nil))
	wantErr(t, s.AddRunTokens(ctx, "", []store.RunToken{tok("<X_1>", "x", "v", 0)}), store.ErrInvalid)
	wantErr(t, s.AddRunTokens(ctx, "run-1", []store.RunToken{tok("", "x", "v", 0)}), store.ErrInvalid)
}
