package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/store/pgtest"
	"github.com/moatproject/moat/internal/store/postgres"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// auditDataDir makes a data dir whose database holds an audit log of n
// records, closed (so the newest checkpoint covers them all).
func auditDataDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := sqlite.Open(context.Background(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys, err := audit.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(context.Background(), s, keys.Signer, keys.HMAC, audit.Options{CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(context.Background(), audit.Record{
			Actor: "user:ana", Action: "secret.read", Resource: "secret/prod/stripe", Outcome: audit.OK,
			Details: map[string]any{"i": i, "value": audit.Sensitive("sk_live_canary")},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAuditVerifyExportProof(t *testing.T) {
	t.Parallel()
	dir := auditDataDir(t, 25)
	out, errOut, code := moat(t, "audit", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "audit log intact: records 0..24 (25)") {
		t.Fatalf("verify: code %d\n%s%s", code, out, errOut)
	}

	export := filepath.Join(t.TempDir(), "audit.jsonl")
	if _, errOut, code := moat(t, "audit", "export", "--data-dir", dir, "--out", export); code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	data, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("sk_live_canary")) {
		t.Fatal("the export holds a sensitive value in clear")
	}
	key := filepath.Join(dir, audit.VerifierKeyFile)
	if out, errOut, code := moat(t, "audit", "verify", "--file", export, "--key", key); code != 0 {
		t.Fatalf("verify --file: %d\n%s%s", code, out, errOut)
	}
	// An export from record 12 verifies too.
	out, _, code = moat(t, "audit", "export", "--data-dir", dir, "--since", "12")
	if code != 0 || !strings.HasPrefix(out, `{"type":"frontier","size":12`) {
		t.Fatalf("export --since: %d %.80s", code, out)
	}
	since := writeFile(t, "since.jsonl", out)
	if out, errOut, code := moat(t, "audit", "verify", "--file", since, "--key", key); code != 0 || !strings.Contains(out, "records 12..24") {
		t.Fatalf("verify of --since export: %d\n%s%s", code, out, errOut)
	}

	// A tampered export fails, naming the record.
	lines := strings.Split(string(data), "\n")
	for i, ln := range lines {
		if strings.Contains(ln, `"seq":7,`) {
			lines[i] = strings.Replace(ln, `"outcome":"ok"`, `"outcome":"denied"`, 1)
		}
	}
	bad := writeFile(t, "bad.jsonl", strings.Join(lines, "\n"))
	_, errOut, code = moat(t, "audit", "verify", "--file", bad, "--key", key)
	if code != 1 || !strings.Contains(errOut, "record 7: modified") {
		t.Fatalf("verify of a tampered export: code %d, %s", code, errOut)
	}

	out, errOut, code = moat(t, "audit", "proof", "3", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, `"proof"`) {
		t.Fatalf("proof: %d %s%s", code, out, errOut)
	}
	proof := writeFile(t, "proof.json", out)
	out, errOut, code = moat(t, "audit", "check-proof", proof, "--key", key)
	if code != 0 || !strings.Contains(out, "record 3 ") {
		t.Fatalf("check-proof: %d %s%s", code, out, errOut)
	}
	forged := writeFile(t, "forged.json", strings.Replace(string(mustRead(t, proof)), `user:ana`, `user:eve`, 1))
	if _, _, code := moat(t, "audit", "check-proof", forged, "--key", key); code != 1 {
		t.Fatalf("check-proof of a forged proof: code %d", code)
	}
	if _, errOut, code := moat(t, "audit", "proof", "25", "--data-dir", dir); code == 0 || !strings.Contains(errOut, "not covered") {
		t.Fatalf("proof past the checkpoint: %d %s", code, errOut)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuditVerifyTamperedDatabase(t *testing.T) {
	t.Parallel()
	dir := auditDataDir(t, 30)
	db, err := sql.Open("sqlite", filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM audit_records WHERE seq = 17`); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := moat(t, "audit", "verify", "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "record 17: missing") {
		t.Fatalf("code %d: %s", code, errOut)
	}
	// Verification opened the database read-only: no migration, no change.
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM audit_records`).Scan(&n); err != nil || n != 29 {
		t.Fatalf("%d records, %v", n, err)
	}
}

func TestAuditVerifyNeedsKey(t *testing.T) {
	t.Parallel()
	dir := auditDataDir(t, 3)
	if err := os.Remove(filepath.Join(dir, audit.VerifierKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := moat(t, "audit", "verify", "--data-dir", dir); code != 1 || !strings.Contains(errOut, audit.VerifierKeyFile) {
		t.Fatalf("code %d: %s", code, errOut)
	}
}

func TestAuditHMAC(t *testing.T) {
	t.Parallel()
	dir := auditDataDir(t, 1)
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetIn(strings.NewReader("sk_live_canary\n"))
	root.SetArgs([]string{"audit", "hmac", "--data-dir", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	got := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(got, "hmac-sha256:") || strings.Contains(got, "canary") {
		t.Fatalf("hmac printed %q", got)
	}
	// It is the HMAC the log stored for that value.
	out, _, _ := moat(t, "audit", "export", "--data-dir", dir)
	if !strings.Contains(out, got) {
		t.Fatal("the printed HMAC is not in the log")
	}
}

func TestAuditVerifyPostgres(t *testing.T) {
	t.Parallel()
	u := pgtest.IsolatedURL(t, pgtest.URL(t))
	s, err := postgres.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	keys, err := audit.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(context.Background(), s, keys.Signer, keys.HMAC, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := l.Append(context.Background(), audit.Record{Actor: "user:ana", Action: "vendor.update", Outcome: audit.OK, Details: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, audit.VerifierKeyFile)
	out, errOut, code := moat(t, "audit", "verify", "--database-url", u, "--key", key)
	if code != 0 || !strings.Contains(out, "records 0..4 (5)") {
		t.Fatalf("code %d\n%s%s", code, out, errOut)
	}
	if _, err := s.WriterDB().Exec(`UPDATE audit_records SET outcome = 'denied' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = moat(t, "audit", "verify", "--database-url", u, "--key", key)
	if code != 1 || !strings.Contains(errOut, "record 2: modified") {
		t.Fatalf("code %d: %s", code, errOut)
	}
}
