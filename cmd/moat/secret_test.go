package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/moatproject/moat/internal/api"
	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

type nopHook struct{}

func (nopHook) SecretAccessed(context.Context, vault.Event) error { return nil }

// vaultServer serves the secrets API over a vault of its own.
func vaultServer(t *testing.T, source vault.KeySource) (string, *vault.Vault) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if source == nil {
		source = vault.KeyFile{Path: filepath.Join(dir, vault.KeyFileName), Create: true}
	}
	v, err := vault.Open(t.Context(), vault.Config{Store: st, Source: source, Hook: nopHook{}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.RegisterSecrets(humago.New(mux, huma.DefaultConfig("Moat", "test")), v, nil)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, v
}

// moatIn runs the CLI with stdin, against server.
func moatIn(t *testing.T, server, stdin string, args ...string) (string, string, int) {
	t.Helper()
	token := writeFile(t, "token", "test-token")
	return moatWithStdin(t, stdin, append(args, "--server", server, "--token-file", token)...)
}

const cliCanary = "sk-cli-canary-Vw52Hd9Jq1"

func TestSecretCommands(t *testing.T) {
	t.Setenv("MOAT_TOKEN", "")
	server, v := vaultServer(t, nil)
	run := func(stdin string, wantCode int, want string, args ...string) string {
		t.Helper()
		out, errOut, code := moatIn(t, server, stdin, args...)
		if code != wantCode || !strings.Contains(out+errOut, want) {
			t.Fatalf("moat %v: code %d, want %d and %q\n%s%s", args, code, wantCode, want, out, errOut)
		}
		if strings.Contains(out+errOut, cliCanary) {
			t.Fatalf("moat %v printed the secret", args)
		}
		return out
	}
	resolve := func(host string) string {
		t.Helper()
		got, err := v.Resolve(t.Context(), vault.Access{Environment: "prod", Connector: "openai", Host: host}, "prod", "OPENAI_API_KEY")
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}

	run(cliCanary+"\n", 0, "secret prod/OPENAI_API_KEY version 1 created",
		"secret", "set", "OPENAI_API_KEY", "--env", "prod", "--connector", "openai", "--host", "api.openai.com", "--rotation-period", "2160h")
	if got := resolve("api.openai.com"); got != cliCanary {
		t.Fatalf("stored %q (the trailing newline must go)", got)
	}
	// A new value alone keeps the settings.
	run(cliCanary+"-2", 0, "version 2 updated", "secret", "set", "OPENAI_API_KEY", "--env", "prod")
	if got := resolve("api.openai.com"); got != cliCanary+"-2" {
		t.Fatalf("stored %q", got)
	}
	// A file's value is taken as is.
	file := writeFile(t, "value", cliCanary+"-file\n")
	run("", 0, "version 3 updated", "secret", "set", "OPENAI_API_KEY", "--env", "prod", "--from-file", file, "--connector", "openai", "--rotation-period", "2160h")
	if got := resolve(""); got != cliCanary+"-file\n" {
		t.Fatalf("stored %q", got)
	}

	run(cliCanary, 1, "bind it with --connector", "secret", "set", "NEW", "--env", "prod")
	run("", 1, "no value", "secret", "set", "NEW", "--env", "prod", "--connector", "c")
	run(cliCanary, 1, "--env is required", "secret", "set", "NEW", "--connector", "c")
	run(cliCanary, 1, "unknown environment", "secret", "set", "NEW", "--env", "qa", "--connector", "c")

	out := run("", 0, "OPENAI_API_KEY", "secret", "list")
	if !strings.Contains(out, "prod") || !strings.Contains(out, "ok (by ") || !strings.Contains(out, "openai") {
		t.Fatalf("list:\n%s", out)
	}
	out = run("", 0, "", "secret", "list", "--rotation", "due,overdue", "-o", "json")
	if !strings.Contains(out, `"secrets": []`) {
		t.Fatalf("due list:\n%s", out)
	}

	run("", 0, "primary term 1", "keys", "status")
	run("", 0, "primary term 2", "keys", "rotate")
	for i := 0; ; i++ {
		var st vaultView
		if err := json.Unmarshal([]byte(run("", 0, "", "keys", "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		if st.Rewrap != nil && !st.Rewrap.Running {
			break
		}
		if i > 10000 {
			t.Fatal("the rewrap never ended")
		}
	}
	run("", 0, "minimum decryption term 2", "keys", "retire", "--min-decryption-term", "2")
	run("", 1, "required", "keys", "retire")

	run("", 0, "vault sealed", "keys", "seal")
	run(cliCanary, 1, "moat unseal", "secret", "set", "OPENAI_API_KEY", "--env", "prod")
	run("", 0, "vault unsealed", "unseal")

	run("", 0, "secret prod/OPENAI_API_KEY deleted", "secret", "delete", "OPENAI_API_KEY", "--env", "prod")
	run("", 1, "404", "secret", "delete", "OPENAI_API_KEY", "--env", "prod")
}

func TestUnsealCommand(t *testing.T) {
	t.Setenv("MOAT_TOKEN", "")
	server, v := vaultServer(t, vault.Passphrase{Time: 1, MemoryKiB: 64, Threads: 1})
	const pass = "correct horse battery staple"
	out, errOut, code := moatIn(t, server, pass+"\n", "unseal")
	if code != 1 || !strings.Contains(errOut, "moat unseal --init") {
		t.Fatalf("unseal before init: %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := moatIn(t, server, pass+"\n", "unseal", "--init"); code != 0 || !strings.Contains(out, "vault unsealed") {
		t.Fatalf("init: %d\n%s%s", code, out, errOut)
	}
	v.Seal()
	if _, errOut, code := moatIn(t, server, "wrong horse battery staple\n", "unseal"); code != 1 || !strings.Contains(errOut, "wrong passphrase") || strings.Contains(errOut, "horse") {
		t.Fatalf("wrong passphrase: %d\n%s", code, errOut)
	}
	if _, errOut, code := moatIn(t, server, "", "unseal"); code != 1 || !strings.Contains(errOut, "no value") {
		t.Fatalf("no passphrase: %d\n%s", code, errOut)
	}
	if !v.Sealed() {
		t.Fatal("unsealed without the passphrase")
	}
}
