package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
)

func TestSetResolveList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	opts := Options{
		Bindings:       Bindings{Connectors: []string{"openai"}, Hosts: []string{"API.OpenAI.com."}, Models: []string{"gpt-4o"}},
		RotationPeriod: 30 * 24 * time.Hour,
	}
	info := set(t, e.v, "prod", "OPENAI_API_KEY", "sk-first", opts)
	if info.Version != 1 || info.KeyTerm != 1 || info.Rotation != RotationOK || info.Bindings.Hosts[0] != "api.openai.com" {
		t.Fatalf("first set: %+v", info)
	}
	a := Access{RunID: "run_1", Workflow: "support/triage", Environment: "prod", Connector: "openai", Host: "api.openai.com:443", Model: "gpt-4o"}
	if got := resolve(t, e.v, a, "prod", "OPENAI_API_KEY"); got != "sk-first" {
		t.Fatalf("resolved %q", got)
	}
	e.clock.add(time.Hour)
	info = set(t, e.v, "prod", "OPENAI_API_KEY", "sk-second", opts)
	if info.Version != 2 || info.ID == "" {
		t.Fatalf("second set: %+v", info)
	}
	if got := resolve(t, e.v, a, "prod", "OPENAI_API_KEY"); got != "sk-second" {
		t.Fatalf("resolved %q after a new version", got)
	}
	// A vault without a warm cache reads the same.
	if got := resolve(t, e.open(t), a, "prod", "OPENAI_API_KEY"); got != "sk-second" {
		t.Fatalf("cold resolve %q", got)
	}

	set(t, e.v, "dev", "OPENAI_API_KEY", "sk-dev", opts)
	list, err := e.v.List(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "OPENAI_API_KEY" || list[0].Version != 2 || list[0].LastUsedAt == nil || list[0].RotateBy == nil {
		t.Fatalf("prod list %+v", list)
	}
	all, err := e.v.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("all list %+v", all)
	}
	// Listings never carry a value.
	js, _ := json.Marshal(all)
	for _, v := range []string{"sk-first", "sk-second", "sk-dev"} {
		if strings.Contains(string(js), v) {
			t.Fatalf("listing carries %s: %s", v, js)
		}
	}

	if err := e.v.Delete(ctx, "prod", "OPENAI_API_KEY"); err != nil {
		t.Fatal(err)
	}
	_, err = e.v.Resolve(ctx, a, "prod", "OPENAI_API_KEY")
	wantErr(t, err, "", ErrNotFound)
	wantErr(t, e.v.Delete(ctx, "prod", "OPENAI_API_KEY"), "", ErrNotFound)
	if got := resolve(t, e.v, Access{Environment: "dev", Connector: "openai", Host: "api.openai.com", Model: "gpt-4o"}, "dev", "OPENAI_API_KEY"); got != "sk-dev" {
		t.Fatalf("dev resolved %q", got)
	}
}

func TestSetRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ok := bound("openai")
	tests := []struct {
		name       string
		env, key   string
		value      string
		opts       Options
		wantTarget error
	}{
		{"unknown environment", "qa", "K", "v", ok, ErrUnknownEnvironment},
		{"bad name", "prod", "1KEY", "v", ok, ErrInvalid},
		{"name with a space", "prod", "MY KEY", "v", ok, ErrInvalid},
		{"empty value", "prod", "K", "", ok, ErrInvalid},
		{"value too large", "prod", "K", strings.Repeat("x", maxValueSize+1), ok, ErrInvalid},
		{"no connector", "prod", "K", "v", Options{}, ErrInvalid},
		{"bad host", "prod", "K", "v", bound("openai", "exa mple.com"), ErrInvalid},
		{"wildcard on a TLD", "prod", "K", "v", bound("openai", "*.com"), ErrInvalid},
		{"rotation period too short", "prod", "K", "v", Options{Bindings: ok.Bindings, RotationPeriod: time.Second}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.v.Set(t.Context(), tc.env, tc.key, []byte(tc.value), tc.opts)
			wantErr(t, err, "", tc.wantTarget)
		})
	}
}

func TestEnvironments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	set(t, e.v, "prod", "DB_PASSWORD", "prod-password", bound("postgres"))
	set(t, e.v, "staging", "DB_PASSWORD", "staging-password", bound("postgres"))
	e.hook.take()

	// Each environment reads its own value.
	if got := resolve(t, e.v, access("staging", "postgres", ""), "staging", "DB_PASSWORD"); got != "staging-password" {
		t.Fatalf("staging resolved %q", got)
	}
	if got := resolve(t, e.v, access("prod", "postgres", ""), "prod", "DB_PASSWORD"); got != "prod-password" {
		t.Fatalf("prod resolved %q", got)
	}
	e.hook.take()

	// A staging run never reads a prod secret, existing or not, and learns
	// nothing about which.
	var msgs []string
	for _, name := range []string{"DB_PASSWORD", "NO_SUCH_SECRET"} {
		got, err := e.v.Resolve(ctx, access("staging", "postgres", ""), "prod", name)
		if got != nil {
			t.Fatal("a denied access returned a value")
		}
		wantErr(t, err, "prod-password", ErrDenied, ErrWrongEnvironment)
		msgs = append(msgs, strings.ReplaceAll(err.Error(), name, "NAME"))
	}
	if msgs[0] != msgs[1] {
		t.Fatalf("denials differ for an existing and a missing secret:\n%s\n%s", msgs[0], msgs[1])
	}
	evs := e.hook.take()
	if len(evs) != 2 || evs[0].Outcome != OutcomeDenied || evs[0].SecretID == "" || evs[0].Access.Environment != "staging" {
		t.Fatalf("denial events %+v", evs)
	}

	_, err := e.v.Resolve(ctx, access("qa", "postgres", ""), "qa", "DB_PASSWORD")
	wantErr(t, err, "", ErrUnknownEnvironment)
	_, err = e.v.List(ctx, "qa")
	wantErr(t, err, "", ErrUnknownEnvironment)

	// The list of environments is configurable.
	custom := e.open(t, func(c *Config) { c.Environments = []string{"qa", "prod"} })
	set(t, custom, "qa", "DB_PASSWORD", "qa-password", bound("postgres"))
	if got := resolve(t, custom, access("qa", "postgres", ""), "qa", "DB_PASSWORD"); got != "qa-password" {
		t.Fatalf("qa resolved %q", got)
	}
	_, err = custom.Set(ctx, "staging", "X", []byte("v"), bound("postgres"))
	wantErr(t, err, "", ErrUnknownEnvironment)
	if _, err := Open(ctx, e.config(func(c *Config) { c.Environments = []string{"Prod"} })); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad environment name: %v", err)
	}
}

func TestBindings(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	set(t, e.v, "prod", "HOSTED", "hosted-value", Options{Bindings: Bindings{
		Connectors: []string{"helpdesk", "crm"}, Hosts: []string{"api.example.com", "*.eu.example.com:8443", "10.0.0.7", "[::1]"},
	}})
	set(t, e.v, "prod", "LLM", "llm-value", Options{Bindings: Bindings{
		Connectors: []string{"openai"}, Hosts: []string{"api.openai.com"}, Models: []string{"gpt-4o", "gpt-4o-mini"},
	}})
	set(t, e.v, "prod", "LOCAL", "local-value", bound("local"))

	tests := []struct {
		name   string
		secret string
		a      Access
		ok     bool
	}{
		{"bound connector and host", "HOSTED", Access{Connector: "helpdesk", Host: "api.example.com"}, true},
		{"host with a port", "HOSTED", Access{Connector: "crm", Host: "API.example.com:443"}, true},
		{"wildcard with its port", "HOSTED", Access{Connector: "crm", Host: "de.eu.example.com:8443"}, true},
		{"IPv4", "HOSTED", Access{Connector: "crm", Host: "10.0.0.7:80"}, true},
		{"IPv6", "HOSTED", Access{Connector: "crm", Host: "[::1]:443"}, true},
		{"other connector", "HOSTED", Access{Connector: "openai", Host: "api.example.com"}, false},
		{"other host", "HOSTED", Access{Connector: "helpdesk", Host: "evil.example.net"}, false},
		{"suffix trick", "HOSTED", Access{Connector: "helpdesk", Host: "api.example.com.evil.net"}, false},
		{"prefix trick", "HOSTED", Access{Connector: "helpdesk", Host: "evilapi.example.com"}, false},
		{"wildcard with another port", "HOSTED", Access{Connector: "crm", Host: "de.eu.example.com:443"}, false},
		{"wildcard without a port", "HOSTED", Access{Connector: "crm", Host: "de.eu.example.com"}, false},
		{"wildcard two labels deep", "HOSTED", Access{Connector: "crm", Host: "a.de.eu.example.com:8443"}, false},
		{"wildcard apex", "HOSTED", Access{Connector: "crm", Host: "eu.example.com:8443"}, false},
		{"no host named", "HOSTED", Access{Connector: "helpdesk"}, false},
		{"bound model", "LLM", Access{Connector: "openai", Host: "api.openai.com", Model: "gpt-4o-mini"}, true},
		{"other model", "LLM", Access{Connector: "openai", Host: "api.openai.com", Model: "o3"}, false},
		{"no model named", "LLM", Access{Connector: "openai", Host: "api.openai.com"}, false},
		{"local without a host", "LOCAL", Access{Connector: "local"}, true},
		{"local sent to a host", "LOCAL", Access{Connector: "local", Host: "example.com"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.a.Environment = "prod"
			got, err := e.v.Resolve(t.Context(), tc.a, "prod", tc.secret)
			if tc.ok {
				if err != nil || len(got) == 0 {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if got != nil {
				t.Fatal("a refused access returned a value")
			}
			wantErr(t, err, "-value", ErrDenied, ErrNotBound)
		})
	}
	denied, alerts := 0, 0
	for _, ev := range e.hook.take() {
		switch {
		case ev.Kind == KindBindingViolation:
			alerts++
		case ev.Outcome == OutcomeDenied:
			denied++
		}
	}
	if denied != 12 || alerts != 12 {
		t.Fatalf("%d denied accesses and %d binding-violation alerts, want 12 of each", denied, alerts)
	}
}

func TestHookFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	set(t, e.v, "prod", "K", "hook-value", bound("c"))
	resolve(t, e.v, access("prod", "c", ""), "prod", "K") // past the first use
	e.hook.setFail(errors.New("audit log unavailable"))
	got, err := e.v.Resolve(t.Context(), access("prod", "c", ""), "prod", "K")
	if got != nil {
		t.Fatal("a value left the vault unrecorded")
	}
	wantErr(t, err, "hook-value", ErrAudit)
	// Denials still fail, with both causes.
	_, err = e.v.Resolve(t.Context(), access("prod", "other", ""), "prod", "K")
	wantErr(t, err, "hook-value", ErrNotBound, ErrAudit)
}

func TestUnusualAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.BurstThreshold, c.BurstWindow = 3, time.Minute })
	set(t, e.v, "prod", "K", "unusual-value", bound("c"))
	a := access("prod", "c", "")

	resolve(t, e.v, a, "prod", "K")
	alerts := e.hook.kinds(KindUnusualAccess)
	if len(alerts) != 1 || !strings.Contains(alerts[0].Reason, "first use by workflow \"support/triage\"") {
		t.Fatalf("first use alerts %+v", alerts)
	}
	resolve(t, e.v, a, "prod", "K")
	// Another vault (another node) knows the pair from the database.
	resolve(t, e.open(t), a, "prod", "K")
	if alerts := e.hook.kinds(KindUnusualAccess); len(alerts) != 0 {
		t.Fatalf("repeat use raised %+v", alerts)
	}
	a.Workflow = "ops/uptime"
	resolve(t, e.v, a, "prod", "K")
	if alerts := e.hook.kinds(KindUnusualAccess); len(alerts) != 1 || alerts[0].Access.Workflow != "ops/uptime" {
		t.Fatalf("new workflow alerts %+v", alerts)
	}

	// A burst of failed decryptions: corrupt the row, fail three times.
	e.corruptCiphertext(t, "length(ciphertext)", "1 = 1")
	fresh := e.open(t, func(c *Config) { c.BurstThreshold, c.BurstWindow = 3, time.Minute })
	for i := range 4 {
		_, err := fresh.Resolve(t.Context(), a, "prod", "K")
		wantErr(t, err, "unusual-value", ErrCorrupt)
		alerts := e.hook.kinds(KindUnusualAccess)
		want := 0
		if i == 2 {
			want = 1
		}
		if len(alerts) != want {
			t.Fatalf("failure %d: %d alerts, want %d", i+1, len(alerts), want)
		}
	}
	// After the window a new burst alerts again.
	e.clock.add(2 * time.Minute)
	for range 3 {
		fresh.Resolve(t.Context(), a, "prod", "K")
	}
	if alerts := e.hook.kinds(KindUnusualAccess); len(alerts) != 1 || !strings.Contains(alerts[0].Reason, "burst") {
		t.Fatalf("second burst alerts %+v", alerts)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	period := 10 * 24 * time.Hour
	set(t, e.v, "prod", "BLOCKING", "blocking-value", Options{Bindings: Bindings{Connectors: []string{"c"}}, RotationPeriod: period, BlockWhenExpired: true})
	set(t, e.v, "prod", "LENIENT", "lenient-value", Options{Bindings: Bindings{Connectors: []string{"c"}}, RotationPeriod: period})
	set(t, e.v, "prod", "FOREVER", "forever-value", bound("c"))
	state := func(name string) RotationState {
		t.Helper()
		in, err := e.v.Get(ctx, "prod", name)
		if err != nil {
			t.Fatal(err)
		}
		return in.Rotation
	}
	steps := []struct {
		advance time.Duration
		want    RotationState
	}{
		{0, RotationOK},
		{8 * 24 * time.Hour, RotationOK},
		{24*time.Hour + time.Minute, RotationDue},
		{24 * time.Hour, RotationOverdue},
	}
	for _, s := range steps {
		e.clock.add(s.advance)
		if got := state("BLOCKING"); got != s.want {
			t.Fatalf("after +%s: %s, want %s", s.advance, got, s.want)
		}
		if got := state("FOREVER"); got != RotationOK {
			t.Fatalf("a secret without a period is %s", got)
		}
	}
	a := access("prod", "c", "")
	_, err := e.v.Resolve(ctx, a, "prod", "BLOCKING")
	wantErr(t, err, "blocking-value", ErrDenied, ErrExpired)
	if got := resolve(t, e.v, a, "prod", "LENIENT"); got != "lenient-value" {
		t.Fatalf("lenient resolved %q", got)
	}
	// Setting a new value makes it current again.
	set(t, e.v, "prod", "BLOCKING", "blocking-value-2", Options{Bindings: Bindings{Connectors: []string{"c"}}, RotationPeriod: period, BlockWhenExpired: true})
	if got := resolve(t, e.v, a, "prod", "BLOCKING"); got != "blocking-value-2" {
		t.Fatalf("rotated resolved %q", got)
	}
}

// TestRowSwap copies ciphertexts between rows with SQL: every copy fails to
// decrypt, cold (fresh vault) and warm (cached data keys).
func TestRowSwap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sql  string
		// resolve: the access that must now fail
		env, secret string
	}{
		{"ciphertext copied to another name", `UPDATE vault_secrets SET ciphertext = (SELECT ciphertext FROM vault_secrets WHERE environment = 'prod' AND name = 'A') WHERE environment = 'prod' AND name = 'B'`, "prod", "B"},
		{"ciphertext copied to another environment", `UPDATE vault_secrets SET ciphertext = (SELECT ciphertext FROM vault_secrets WHERE environment = 'prod' AND name = 'A') WHERE environment = 'staging' AND name = 'A'`, "staging", "A"},
		{"row moved to another environment", `UPDATE vault_secrets SET environment = 'dev' WHERE environment = 'prod' AND name = 'A'`, "dev", "A"},
		{"row renamed", `UPDATE vault_secrets SET name = 'C' WHERE environment = 'prod' AND name = 'A'`, "prod", "C"},
		{"version changed", `UPDATE vault_secrets SET version = version + 1 WHERE environment = 'prod' AND name = 'A'`, "prod", "A"},
		{"id changed", `DELETE FROM vault_secret_uses; UPDATE vault_secrets SET id = 'sec_other' WHERE environment = 'prod' AND name = 'A'`, "prod", "A"},
		{"older version restored", `UPDATE vault_secrets SET ciphertext = (SELECT ciphertext FROM old_a), version = version WHERE environment = 'prod' AND name = 'A'`, "prod", "A"},
	}
	for _, tc := range tests {
		for _, warm := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/warm=%v", tc.name, warm), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				ctx := t.Context()
				set(t, e.v, "prod", "A", "value-prod-a-old", bound("c"))
				db := e.store.WriterDB()
				if _, err := db.ExecContext(ctx, `CREATE TABLE old_a AS SELECT ciphertext FROM vault_secrets WHERE name = 'A'`); err != nil {
					t.Fatal(err)
				}
				set(t, e.v, "prod", "A", "value-prod-a", bound("c"))
				set(t, e.v, "prod", "B", "value-prod-b", bound("c"))
				set(t, e.v, "staging", "A", "value-staging-a", bound("c"))
				v := e.v
				if warm {
					for _, r := range []struct{ env, name string }{{"prod", "A"}, {"prod", "B"}, {"staging", "A"}} {
						resolve(t, v, access(r.env, "c", ""), r.env, r.name)
					}
				} else {
					v = e.open(t)
				}
				if _, err := db.ExecContext(ctx, tc.sql); err != nil {
					t.Fatal(err)
				}
				got, err := v.Resolve(ctx, access(tc.env, "c", ""), tc.env, tc.secret)
				if got != nil {
					t.Fatalf("swapped row decrypted to %q", got)
				}
				wantErr(t, err, "value-", ErrCorrupt)
				evs := e.hook.take()
				if last := evs[len(evs)-1]; last.Outcome != OutcomeFailed || last.Reason != "ciphertext corrupt or moved" {
					t.Fatalf("last event %+v", last)
				}
			})
		}
	}
}

func TestCorruptCiphertext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	const value = "corrupt-me-value"
	set(t, e.v, "prod", "K", value, bound("c"))
	var orig []byte
	if err := e.store.WriterDB().QueryRowContext(ctx, `SELECT ciphertext FROM vault_secrets`).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mangle func([]byte) []byte
		target error
	}{
		{"format version", func(b []byte) []byte { b[0] = 2; return b }, ErrCorrupt},
		{"term", func(b []byte) []byte { b[4] = 7; return b }, ErrCorrupt}, // no longer the row's term
		{"data key nonce", func(b []byte) []byte { b[6] ^= 1; return b }, ErrCorrupt},
		{"wrapped data key", func(b []byte) []byte { b[30] ^= 1; return b }, ErrCorrupt},
		{"value nonce", func(b []byte) []byte { b[66] ^= 1; return b }, ErrCorrupt},
		{"sealed value", func(b []byte) []byte { b[len(b)-20] ^= 1; return b }, ErrCorrupt},
		{"tag", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, ErrCorrupt},
		{"truncated", func(b []byte) []byte { return b[:minEnvelope-1] }, ErrCorrupt},
		{"extended", func(b []byte) []byte { return append(b, 0) }, ErrCorrupt},
		{"empty", func([]byte) []byte { return []byte{} }, ErrCorrupt},
	}
	for _, tc := range tests {
		for _, warm := range []bool{false, true} {
			b := tc.mangle(append([]byte(nil), orig...))
			if _, err := e.store.WriterDB().ExecContext(ctx, `UPDATE vault_secrets SET ciphertext = ?`, b); err != nil {
				t.Fatal(err)
			}
			v := e.v
			if !warm {
				v = e.open(t)
			}
			got, err := v.Resolve(ctx, access("prod", "c", ""), "prod", "K")
			if got != nil {
				t.Fatalf("%s: corrupt ciphertext decrypted", tc.name)
			}
			wantErr(t, err, value, tc.target)
			if _, err := e.store.WriterDB().ExecContext(ctx, `UPDATE vault_secrets SET ciphertext = ?`, orig); err != nil {
				t.Fatal(err)
			}
			if got := resolve(t, v, access("prod", "c", ""), "prod", "K"); got != value {
				t.Fatalf("%s: restored row resolved %q", tc.name, got)
			}
		}
	}
	for _, ev := range e.hook.take() {
		if js, _ := json.Marshal(ev); strings.Contains(string(js), value) {
			t.Fatalf("event carries the value: %s", js)
		}
	}
}

func TestMissingTerm(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.v.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	set(t, e.v, "prod", "K", "term-two-value", bound("c"))
	if _, err := e.store.WriterDB().ExecContext(ctx, `DELETE FROM vault_keys WHERE term = 2`); err != nil {
		t.Fatal(err)
	}
	v := e.open(t)
	_, err := v.Resolve(ctx, access("prod", "c", ""), "prod", "K")
	wantErr(t, err, "term-two-value", ErrMissingTerm)
	// With its primary term gone the vault cannot set either.
	_, err = v.Set(ctx, "prod", "L", []byte("x"), bound("c"))
	wantErr(t, err, "", ErrMissingTerm)
}

func TestRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	set(t, e.v, "prod", "OLD", "old-value", bound("c"))
	set(t, e.v, "dev", "OLD", "old-dev-value", bound("c"))
	var oldCT []byte
	if err := e.store.WriterDB().QueryRowContext(ctx, `SELECT ciphertext FROM vault_secrets WHERE environment = 'prod' AND name = 'OLD'`).Scan(&oldCT); err != nil {
		t.Fatal(err)
	}

	term, err := e.v.RotateKey(ctx)
	if err != nil || term != 2 {
		t.Fatalf("rotate: %d %v", term, err)
	}
	info := set(t, e.v, "prod", "NEW", "new-value", bound("c"))
	if info.KeyTerm != 2 {
		t.Fatalf("new secret under term %d", info.KeyTerm)
	}
	// Another node learns of the rotation from the database.
	other := e.open(t)
	for _, v := range []*Vault{e.v, other} {
		if resolve(t, v, access("prod", "c", ""), "prod", "OLD") != "old-value" || resolve(t, v, access("prod", "c", ""), "prod", "NEW") != "new-value" {
			t.Fatal("old and new terms do not both decrypt")
		}
	}

	err = e.v.SetMinDecryptionTerm(ctx, 2)
	wantErr(t, err, "", ErrTermInUse)
	if !strings.Contains(err.Error(), "2 secrets still use terms below 2") {
		t.Fatalf("refusal does not say how many: %v", err)
	}
	wantErr(t, e.v.SetMinDecryptionTerm(ctx, 3), "", ErrInvalid)

	res, err := e.v.Rewrap(ctx, RewrapOptions{BatchSize: 1})
	if err != nil || res.Rewrapped != 2 || res.Term != 2 || len(res.Failed) != 0 {
		t.Fatalf("rewrap: %+v %v", res, err)
	}
	ks, err := e.v.KeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ks.PrimaryTerm != 2 || len(ks.Terms) != 2 || ks.Terms[0].Secrets != 0 || ks.Terms[1].Secrets != 3 {
		t.Fatalf("status after rewrap %+v", ks)
	}
	// Rewrapped values are unchanged, and a second rewrap has nothing to do.
	if resolve(t, e.open(t), access("prod", "c", ""), "prod", "OLD") != "old-value" {
		t.Fatal("rewrapped value changed")
	}
	if res, err := e.v.Rewrap(ctx, RewrapOptions{}); err != nil || res.Rewrapped != 0 {
		t.Fatalf("second rewrap: %+v %v", res, err)
	}

	if err := e.v.SetMinDecryptionTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	var keys int
	if err := e.store.WriterDB().QueryRowContext(ctx, `SELECT COUNT(*) FROM vault_keys WHERE term < 2`).Scan(&keys); err != nil || keys != 0 {
		t.Fatalf("retired keys left: %d %v", keys, err)
	}
	wantErr(t, e.v.SetMinDecryptionTerm(ctx, 1), "", ErrInvalid)

	// A ciphertext under the retired term (a restored backup row) is refused.
	if _, err := e.store.WriterDB().ExecContext(ctx, `UPDATE vault_secrets SET ciphertext = ?, key_term = 1, version = 1 WHERE environment = 'prod' AND name = 'OLD'`, oldCT); err != nil {
		t.Fatal(err)
	}
	for _, v := range []*Vault{e.v, other, e.open(t)} {
		_, err = v.Resolve(ctx, access("prod", "c", ""), "prod", "OLD")
		wantErr(t, err, "old-value", ErrTermRetired)
	}
	if resolve(t, e.v, access("prod", "c", ""), "prod", "NEW") != "new-value" {
		t.Fatal("term 2 stopped decrypting")
	}
}

func TestRewrapInterruptedAndResumed(t *testing.T) {
	t.Parallel()
	const n = 25
	setup := func(t *testing.T) (*env, *faultStore, *Vault) {
		e := newEnv(t)
		for i := range n {
			set(t, e.v, "prod", fmt.Sprintf("S%02d", i), fmt.Sprintf("value-%02d", i), bound("c"))
		}
		if _, err := e.v.RotateKey(t.Context()); err != nil {
			t.Fatal(err)
		}
		fs := &faultStore{Store: e.store}
		return e, fs, e.open(t, func(c *Config) { c.Store = fs })
	}
	// check: every value still decrypts, and count how many are at term 2.
	check := func(t *testing.T, e *env) int {
		v := e.open(t)
		for i := range n {
			if got := resolve(t, v, access("prod", "c", ""), "prod", fmt.Sprintf("S%02d", i)); got != fmt.Sprintf("value-%02d", i) {
				t.Fatalf("S%02d resolved %q", i, got)
			}
		}
		counts, err := e.store.CountSecretsByTerm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return counts[2]
	}

	t.Run("error mid-batch", func(t *testing.T) {
		e, fs, v := setup(t)
		boom := errors.New("disk full")
		fs.onRewrap = func(call int) error {
			if call == 13 { // inside the third batch of five
				return boom
			}
			return nil
		}
		res, err := v.Rewrap(t.Context(), RewrapOptions{BatchSize: 5})
		if !errors.Is(err, boom) || res.Rewrapped != 10 {
			t.Fatalf("interrupted rewrap: %+v %v", res, err)
		}
		if got := check(t, e); got != 10 {
			t.Fatalf("%d at term 2 after two committed batches, want 10", got)
		}
		fs.onRewrap = nil
		res, err = v.Rewrap(t.Context(), RewrapOptions{BatchSize: 5})
		if err != nil || res.Rewrapped != n-10 {
			t.Fatalf("resumed rewrap: %+v %v", res, err)
		}
		if got := check(t, e); got != n {
			t.Fatalf("%d at term 2 after resuming, want %d", got, n)
		}
	})

	t.Run("cancelled between batches", func(t *testing.T) {
		e, _, v := setup(t)
		ctx, cancel := context.WithCancel(t.Context())
		res, err := v.Rewrap(ctx, RewrapOptions{BatchSize: 4, Progress: func(r RewrapResult) {
			if r.Rewrapped >= 8 {
				cancel()
			}
		}})
		if !errors.Is(err, context.Canceled) || res.Rewrapped != 8 {
			t.Fatalf("cancelled rewrap: %+v %v", res, err)
		}
		if got := check(t, e); got != 8 {
			t.Fatalf("%d at term 2, want 8", got)
		}
		res, err = v.Rewrap(t.Context(), RewrapOptions{BatchSize: 4})
		if err != nil || res.Rewrapped != n-8 {
			t.Fatalf("resumed rewrap: %+v %v", res, err)
		}
		if got := check(t, e); got != n {
			t.Fatalf("%d at term 2, want %d", got, n)
		}
	})

	t.Run("corrupt secret skipped", func(t *testing.T) {
		e, _, v := setup(t)
		e.corruptCiphertext(t, "31", "name = 'S07'")
		res, err := v.Rewrap(t.Context(), RewrapOptions{BatchSize: 5})
		if err != nil || res.Rewrapped != n-1 || len(res.Failed) != 1 {
			t.Fatalf("rewrap with a corrupt secret: %+v %v", res, err)
		}
		err = v.SetMinDecryptionTerm(t.Context(), 2)
		wantErr(t, err, "", ErrTermInUse)
		if !strings.Contains(err.Error(), "1 secrets") {
			t.Fatalf("refusal %v", err)
		}
	})
}

func TestSeal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	set(t, e.v, "prod", "K", "seal-value", bound("c"))
	if _, err := e.v.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	set(t, e.v, "prod", "L", "seal-value-2", bound("c"))
	resolve(t, e.v, access("prod", "c", ""), "prod", "K")

	e.v.mu.RLock()
	held := [][]byte{e.v.root}
	for _, k := range e.v.terms {
		held = append(held, k)
	}
	e.v.mu.RUnlock()
	held = append(held, e.v.cache.keys()...)
	if len(held) != 5 { // root, two terms, two cached data keys
		t.Fatalf("%d key slices before sealing, want 5", len(held))
	}
	for i, k := range held {
		if len(k) != keySize || allZero(k) {
			t.Fatalf("key slice %d is not a live key", i)
		}
	}

	e.v.Seal()
	if !e.v.Sealed() {
		t.Fatal("not sealed")
	}
	for i, k := range held {
		if !allZero(k) {
			t.Fatalf("key slice %d not zeroised by Seal", i)
		}
	}
	if e.v.cache.len() != 0 {
		t.Fatal("cache not emptied")
	}
	_, err := e.v.Resolve(ctx, access("prod", "c", ""), "prod", "K")
	wantErr(t, err, "", ErrSealed)
	_, err = e.v.Set(ctx, "prod", "M", []byte("x"), bound("c"))
	wantErr(t, err, "", ErrSealed)
	_, err = e.v.RotateKey(ctx)
	wantErr(t, err, "", ErrSealed)
	_, err = e.v.Rewrap(ctx, RewrapOptions{})
	wantErr(t, err, "", ErrSealed)
	wantErr(t, e.v.SetMinDecryptionTerm(ctx, 2), "", ErrSealed)
	// What needs no key still works.
	if list, err := e.v.List(ctx, "prod"); err != nil || len(list) != 2 {
		t.Fatalf("list while sealed: %v %v", list, err)
	}
	if ks, err := e.v.KeyStatus(ctx); err != nil || !ks.Sealed || ks.PrimaryTerm != 2 {
		t.Fatalf("status while sealed: %+v %v", ks, err)
	}

	// A key file vault unseals by reading its file again.
	if err := e.v.Unseal(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if resolve(t, e.v, access("prod", "c", ""), "prod", "L") != "seal-value-2" {
		t.Fatal("unsealed vault resolves wrongly")
	}
}

// fastKDF keeps Argon2id cheap in tests.
var fastKDF = Passphrase{Time: 1, MemoryKiB: 64, Threads: 1}

func TestPassphrase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Source = fastKDF })
	ctx := t.Context()
	pass := []byte("correct horse battery staple")
	if !e.v.Sealed() {
		t.Fatal("a passphrase vault opened unsealed")
	}
	wantErr(t, e.v.Unseal(ctx, pass), "", ErrNotInitialized)
	_, err := e.v.Set(ctx, "prod", "K", []byte("x"), bound("c"))
	wantErr(t, err, "", ErrSealed)
	wantErr(t, e.v.Init(ctx, []byte("short")), "", ErrInvalid)
	if err := e.v.Init(ctx, pass); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.v.Init(ctx, pass), "", ErrAlreadyInitialized)
	set(t, e.v, "prod", "K", "passphrase-value", bound("c"))

	// A restart comes up sealed.
	v := e.open(t, func(c *Config) {
		c.Source = fastKDF
		c.UnsealBackoff, c.UnsealMaxBackoff = 10*time.Second, 35*time.Second
	})
	if !v.Sealed() {
		t.Fatal("restarted passphrase vault is unsealed")
	}
	_, err = v.Resolve(ctx, access("prod", "c", ""), "prod", "K")
	wantErr(t, err, "passphrase-value", ErrSealed)

	wrong := []byte("incorrect horse battery staple")
	wantErr(t, v.Unseal(ctx, wrong), "", ErrWrongPassphrase)
	if !v.Sealed() {
		t.Fatal("a wrong passphrase unsealed")
	}
	// Too soon: refused without trying, even with the right passphrase.
	err = v.Unseal(ctx, pass)
	wantErr(t, err, "", ErrUnsealRateLimited)
	if !strings.Contains(err.Error(), "10s") {
		t.Fatalf("rate limit does not say when: %v", err)
	}
	// The wait doubles with each failure, up to the maximum.
	for _, wait := range []time.Duration{10 * time.Second, 20 * time.Second, 35 * time.Second, 35 * time.Second} {
		e.clock.add(wait - time.Second)
		wantErr(t, v.Unseal(ctx, wrong), "", ErrUnsealRateLimited)
		e.clock.add(time.Second)
		wantErr(t, v.Unseal(ctx, wrong), "", ErrWrongPassphrase)
	}
	e.clock.add(35 * time.Second)
	if err := v.Unseal(ctx, pass); err != nil {
		t.Fatal(err)
	}
	if resolve(t, v, access("prod", "c", ""), "prod", "K") != "passphrase-value" {
		t.Fatal("unsealed vault resolves wrongly")
	}
	// Success resets the backoff.
	v.Seal()
	wantErr(t, v.Unseal(ctx, wrong), "", ErrWrongPassphrase)
	e.clock.add(10 * time.Second)
	if err := v.Unseal(ctx, pass); err != nil {
		t.Fatal(err)
	}

	// The keyring refuses other sources, and other keyrings refuse it.
	if _, err := Open(ctx, e.config()); !errors.Is(err, ErrKeySource) {
		t.Fatalf("key file on a passphrase keyring: %v", err)
	}
	plain := newEnv(t)
	if _, err := Open(ctx, plain.config(func(c *Config) { c.Source = fastKDF })); !errors.Is(err, ErrKeySource) {
		t.Fatalf("passphrase on a key file keyring: %v", err)
	}
}

func TestWrongRootKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := filepath.Join(t.TempDir(), KeyFileName)
	if _, err := (KeyFile{Path: other, Create: true}).RootKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), e.config(func(c *Config) { c.Source = KeyFile{Path: other} }))
	wantErr(t, err, "", ErrWrongRootKey)

	// Once a keyring exists, a lost key file is reported, not replaced by
	// a new key.
	lost := filepath.Join(t.TempDir(), KeyFileName)
	_, err = Open(t.Context(), e.config(func(c *Config) { c.Source = KeyFile{Path: lost, Create: true} }))
	wantErr(t, err, "", ErrKeySource)
	if _, serr := os.Stat(lost); serr == nil {
		t.Fatal("a new key file was created for an existing keyring")
	}
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "data", KeyFileName)
	kf := KeyFile{Path: path, Create: true}
	k1, err := kf.RootKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", info.Mode().Perm())
	}
	k2, err := KeyFile{Path: path}.RootKey(t.Context())
	if err != nil || string(k1) != string(k2) || len(k1) != keySize {
		t.Fatalf("reloaded key differs: %v", err)
	}
	if !strings.Contains(kf.Warning(), "production") || !strings.Contains(kf.Warning(), path) {
		t.Fatalf("warning %q", kf.Warning())
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := KeyFile{Path: path}.RootKey(t.Context())
		wantErr(t, err, "", ErrKeySource)
		if !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode %v: %v", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := (KeyFile{Path: path}).RootKey(t.Context()); err != nil {
		t.Fatalf("mode 0400: %v", err)
	}

	_, err = KeyFile{Path: filepath.Join(dir, "missing.key")}.RootKey(t.Context())
	wantErr(t, err, "", ErrKeySource)
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not a key at all, but a secret-ish line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = KeyFile{Path: bad}.RootKey(t.Context())
	wantErr(t, err, "secret-ish", ErrKeySource)
	_, err = KeyFile{Path: dir}.RootKey(t.Context())
	wantErr(t, err, "", ErrKeySource)
}

func TestParseKeyFile(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("A", 43) + "="
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"bare", good, true},
		{"newline", good + "\n", true},
		{"two newlines", good + "\n\n", false},
		{"crlf", good + "\r\n", false},
		{"leading space", " " + good, false},
		{"unpadded", strings.Repeat("A", 43), false},
		{"url alphabet", strings.Repeat("_", 43) + "=", false},
		{"non-canonical padding bits", strings.Repeat("A", 42) + "B=", false},
		{"31 bytes", strings.Repeat("A", 42) + "==", false},
		{"48 bytes", strings.Repeat("A", 64), false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := parseKeyFile([]byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("parse: %v", err)
			}
			if tc.ok && len(key) != keySize {
				t.Fatalf("key of %d bytes", len(key))
			}
		})
	}
}

func TestEnvKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) {
		c.Source = EnvKey{Lookup: func(name string) (string, bool) {
			if name == EnvVar {
				return "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", true
			}
			return "", false
		}}
	})
	set(t, e.v, "prod", "K", "env-value", bound("c"))
	if resolve(t, e.open(t, func(c *Config) { c.Source = e.v.source }), access("prod", "c", ""), "prod", "K") != "env-value" {
		t.Fatal("env key vault resolves wrongly")
	}
	for _, val := range []string{"", "short", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"} {
		_, err := EnvKey{Lookup: func(string) (string, bool) { return val, val != "" }}.RootKey(t.Context())
		wantErr(t, err, "", ErrKeySource)
	}
}

func TestOpenRequiresHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := Open(t.Context(), e.config(func(c *Config) { c.Hook = nil }))
	wantErr(t, err, "", ErrInvalid)
}

// TestConcurrentInitialise: two vaults (two nodes) opening one new
// database at once initialise it once and agree on the keyring.
func TestConcurrentInitialise(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := sqlite.Open(t.Context(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kf := KeyFile{Path: filepath.Join(dir, KeyFileName), Create: true}
	if _, err := kf.RootKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: s, Source: kf, Hook: &memHook{}}
	vaults := make([]*Vault, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range vaults {
		wg.Go(func() { vaults[i], errs[i] = Open(context.Background(), cfg) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	set(t, vaults[0], "prod", "K", "shared-value", bound("c"))
	if resolve(t, vaults[1], access("prod", "c", ""), "prod", "K") != "shared-value" {
		t.Fatal("the two vaults disagree")
	}
	keys, err := s.ListVaultKeys(t.Context())
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %d %v", len(keys), err)
	}
}

var _ store.Store = (*faultStore)(nil)
