package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/detect"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/pgtest"
	"github.com/moatproject/moat/internal/store/postgres"
	"github.com/moatproject/moat/internal/store/sqlite"
)

// auditDataDir makes a data dir whose database holds an audit log of n
// records, closed (so the newest checkpoint covers them all).
func auditDataDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	l, closeLog := openDirAudit(t, dir, nil, audit.Options{CheckpointEvery: 10})
	for i := range n {
		if _, err := l.Append(context.Background(), audit.Record{
			Actor: "user:ana", Action: "secret.read", Resource: "secret/prod/stripe", Outcome: audit.OK,
			Details: map[string]any{"i": i, "value": audit.Sensitive("sk_live_canary")},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openDirAudit opens the audit log in a data dir's database, over the
// store as wrap makes it (nil: as it is). closeLog closes the log, then
// the database.
func openDirAudit(t *testing.T, dir string, wrap func(store.Store) store.Store, opts audit.Options) (l *audit.Log, closeLog func() error) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.LoadOrCreateKeys(dir)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	logged := s
	if wrap != nil {
		logged = wrap(s)
	}
	l, err = audit.Open(context.Background(), logged, keys.Signer, keys.HMAC, opts)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	return l, func() error {
		defer s.Close()
		return l.Close()
	}
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
	printed := hmacLines(t, stdout.String())
	got := printed["as given"]
	if !strings.HasPrefix(got, "hmac-sha256:") || strings.Contains(stdout.String(), "canary") {
		t.Fatalf("hmac printed %q", stdout.String())
	}
	// It is the HMAC the log stored for that value.
	out, _, _ := moat(t, "audit", "export", "--data-dir", dir)
	if !strings.Contains(out, got) {
		t.Fatal("the printed HMAC is not in the log")
	}
}

// hmacLines maps each label `moat audit hmac` printed to its HMAC.
func hmacLines(t *testing.T, out string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for line := range strings.Lines(out) {
		h, labels, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "  ")
		if !ok || !strings.HasPrefix(h, "hmac-sha256:") || len(h) != len("hmac-sha256:")+64 {
			t.Fatalf("line %q is not an HMAC and its labels", line)
		}
		for _, l := range strings.Split(labels, "; ") {
			if _, dup := m[l]; dup {
				t.Fatalf("label %q printed twice in %q", l, out)
			}
			m[l] = h
		}
	}
	return m
}

// An identifier an AI call carried is stored normalised: `moat audit hmac`
// prints the HMAC of each form a value typed by a person may be stored
// under, one line per distinct HMAC, and the one stored is among them.
func TestAuditHMACNormalisedForms(t *testing.T) {
	t.Parallel()
	const (
		text   = "normalised as text (e-mail, name, address)"
		number = "normalised as a number (phone, card, IBAN, ID)"
	)
	for _, tc := range []struct {
		class, input string
		want         map[string]string // label: the form whose HMAC it is
	}{
		{"pii.email", " Jane.Doe@Example.COM\n", map[string]string{"as given": " Jane.Doe@Example.COM", text: "jane.doe@example.com", number: "JANEDOEEXAMPLECOM"}},
		{"pii.email", "jane.doe@example.com", map[string]string{"as given": "jane.doe@example.com", text: "jane.doe@example.com", number: "JANEDOEEXAMPLECOM"}},
		{"pii.card", "4111 1111 1111 1111\r\n", map[string]string{"as given": "4111 1111 1111 1111", text: "4111 1111 1111 1111", number: "4111111111111111"}},
		{"pii.phone", "+44 20 7946 0958", map[string]string{"as given": "+44 20 7946 0958", text: "+44 20 7946 0958", number: "442079460958"}},
		{"pii.person", "  ", map[string]string{"as given": "  "}},
	} {
		t.Run(tc.class+" "+strings.TrimSpace(tc.input), func(t *testing.T) {
			t.Parallel()
			normalised := detect.Normalize(tc.class, strings.TrimSpace(tc.input))
			dir := t.TempDir()
			appendAudit(t, dir, map[string]any{"subjects": []any{audit.Sensitive(normalised)}})
			key, err := audit.LoadHMACKey(dir)
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			root := newRoot(&stdout, &stderr)
			root.SetIn(strings.NewReader(tc.input))
			root.SetArgs([]string{"audit", "hmac", "--data-dir", dir})
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			printed := hmacLines(t, stdout.String())
			if len(printed) != len(tc.want) {
				t.Errorf("printed %q, want the labels of %q", stdout.String(), tc.want)
			}
			for label, form := range tc.want {
				if printed[label] != audit.HMAC(key, form) {
					t.Errorf("%s: printed %q, want the HMAC of %q", label, printed[label], form)
				}
			}
			if strings.Contains(strings.ToLower(stdout.String()), strings.ToLower(strings.TrimSpace(tc.input))) && strings.TrimSpace(tc.input) != "" {
				t.Errorf("the value is printed: %q", stdout.String())
			}
			// Every form the retention index is searched under is printed,
			// and the one the log holds is found in its export.
			for _, f := range detect.NormalizedForms(tc.input) {
				if !slices.Contains(slices.Collect(maps.Values(printed)), audit.HMAC(key, f)) {
					t.Errorf("the HMAC of the form %q is not printed", f)
				}
			}
			if normalised == "" {
				return
			}
			out, _, code := moat(t, "audit", "export", "--data-dir", dir)
			if code != 0 || !strings.Contains(out, audit.HMAC(key, normalised)) {
				t.Fatalf("export: %d; the stored subject's HMAC is not in it", code)
			}
			found := false
			for _, h := range printed {
				found = found || strings.Contains(out, h)
			}
			if !found {
				t.Error("no printed HMAC is in the log")
			}
		})
	}
}

// appendAudit makes a data dir whose audit log holds one ai.call record
// with details, closed.
func appendAudit(t *testing.T, dir string, details map[string]any) {
	t.Helper()
	l, closeLog := openDirAudit(t, dir, nil, audit.Options{})
	if _, err := l.Append(context.Background(), audit.Record{Actor: "key:key_1", Action: "ai.call", Resource: "model/chat", Outcome: audit.OK, Details: details}); err != nil {
		t.Fatal(err)
	}
	if err := closeLog(); err != nil {
		t.Fatal(err)
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

// downStore refuses audit writes, like a database that is down.
type downStore struct{ store.Store }

func (downStore) AppendAudit(context.Context, []store.AuditRecord) error {
	return errors.New("database down")
}

func (downStore) InTx(context.Context, func(store.Tx) error) error {
	return errors.New("database down")
}

// Records acknowledged into the journal but not yet in the database are
// named by verify, which reads the database only.
func TestAuditVerifyNotesJournaledRecords(t *testing.T) {
	t.Parallel()
	dir := auditDataDir(t, 25)
	l, closeLog := openDirAudit(t, dir, func(s store.Store) store.Store { return downStore{s} }, audit.Options{Journal: filepath.Join(dir, audit.JournalFile)})
	// Closing cannot commit the journaled records: the database is down.
	defer closeLog()
	if _, err := l.Append(context.Background(),
		audit.Record{Actor: "user:ana", Action: "secret.read", Resource: "secret/prod/a", Outcome: audit.OK},
		audit.Record{Actor: "user:ana", Action: "secret.read", Resource: "secret/prod/b", Outcome: audit.OK}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := moat(t, "audit", "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "records 0..24 (25)") || !strings.Contains(out, "records 25..26 are in "+filepath.Join(dir, audit.JournalFile)) {
		t.Fatalf("verify: code %d\n%s%s", code, out, errOut)
	}
}

// Records committed since the newest checkpoint verify, and the note says
// when moat serve will sign one that covers them.
func TestAuditVerifyNotesUncoveredRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, closeLog := openDirAudit(t, dir, nil, audit.Options{CheckpointInterval: time.Hour})
	defer closeLog()
	for _, r := range []string{"a", "b", "c"} {
		if _, err := l.Append(context.Background(),
			audit.Record{Actor: "user:ana", Action: "secret.read", Resource: "secret/prod/" + r, Outcome: audit.OK}); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := moat(t, "audit", "verify", "--data-dir", dir)
	want := fmt.Sprintf("note: records 0..2 are not yet covered by a signed checkpoint (moat serve signs one once %d records follow the last, %v after the last, and when it stops)",
		audit.DefaultCheckpointEvery, audit.DefaultCheckpointInterval)
	if code != 0 || !strings.Contains(out, "records 0..2 (3), 0 checkpoints verified") || !strings.Contains(out, want) {
		t.Fatalf("verify: code %d\n%s%s\nwant the note %q", code, out, errOut, want)
	}
}
