package retention_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/audit"
	"github.com/moatproject/moat/internal/audit/audittest"
	"github.com/moatproject/moat/internal/retention"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

type nopHook struct{}

func (nopHook) SecretAccessed(context.Context, vault.Event) error { return nil }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// world is a store sealing its payloads through a real vault, with run
// keys in a file of their own, an audit log and a purger, as moat serve
// wires them.
type world struct {
	dir    string
	store  store.Store
	keys   store.RunKeyStore
	cipher *vault.PayloadKeys
	log    *audit.Log
	purger *retention.Purger
	clock  *clock
	wf     store.Workflow
	ver    store.Version
}

var digestKey = []byte("0123456789abcdef0123456789abcdef")

func digest(s string) []byte {
	m := hmac.New(sha256.New, digestKey)
	m.Write([]byte(s))
	return m.Sum(nil)
}

func newWorld(t testing.TB, rules retention.Rules) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{dir: t.TempDir(), clock: &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}}
	st, err := sqlite.Open(ctx, filepath.Join(w.dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w.store = st
	if w.keys, err = sqlite.OpenRunKeys(ctx, filepath.Join(w.dir, "run-keys.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.keys.Close() })
	v, err := vault.Open(ctx, vault.Config{Store: st, Hook: nopHook{}, Now: w.clock.now,
		Source: vault.KeyFile{Path: filepath.Join(w.dir, vault.KeyFileName), Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	w.cipher = v.PayloadKeys(w.keys, vault.PayloadKeysOptions{})
	w.log = audittest.OpenLog(t, st)
	st.SetPayloadSealer(&retention.Sealer{Cipher: w.cipher, Digest: digest, Rules: rules})
	w.purger = &retention.Purger{Store: st, Cipher: w.cipher, Digest: digest, Audit: w.log, Now: w.clock.now}
	w.wf, w.ver, _, err = st.SaveWorkflowVersion(ctx, store.NewVersion{Project: "support", Name: "triage", Hash: "h1",
		Definition: []byte(`{}`), Source: []byte("x"), At: w.clock.now()})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// finishedRun stores a run with input, one step output and an output, and
// finishes it now.
func (w *world) finishedRun(t testing.TB, id, input, stepOutput string, keep store.Retention) {
	t.Helper()
	ctx := context.Background()
	now := w.clock.now()
	run := store.Run{ID: id, ProjectID: w.wf.ProjectID, WorkflowID: w.wf.ID, VersionID: w.ver.ID, Status: store.RunRunning,
		Trigger: "api", Input: []byte(input), Retention: keep, CreatedAt: now, UpdatedAt: now}
	if err := w.store.CreateRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	if err := w.store.UpsertStep(ctx, store.Step{RunID: id, StepID: "answer", Uses: "ai.chat", Status: store.StepSucceeded,
		Output: []byte(stepOutput), UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	run.Status, run.Output, run.FinishedAt = store.RunSucceeded, []byte(`{"done":true}`), &now
	if err := w.store.UpdateRun(ctx, run); err != nil {
		t.Fatal(err)
	}
}

func (w *world) auditText(t *testing.T) string {
	t.Helper()
	recs, err := w.store.ListAudit(context.Background(), 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s %s %s\n", r.Actor, r.Action, r.Outcome, r.Details)
	}
	return b.String()
}

// rawInput reads a run's sealed input from a database file, past the
// store.
func rawInput(t *testing.T, st store.Store, runID string) []byte {
	t.Helper()
	var b []byte
	if err := st.WriterDB().QueryRowContext(context.Background(), `SELECT input FROM runs WHERE id = ?`, runID).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPurgeDestroysExpiredPayloadsAndCopiesOfThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, retention.Rules{})
	w.finishedRun(t, "run-old", `{"email":"jane@example.com"}`, `{"answer":"hello jane"}`, store.Retention{Input: time.Hour, Steps: time.Hour, Output: time.Hour})
	w.finishedRun(t, "run-kept", `{"email":"john@example.com"}`, `{"answer":"hello john"}`, store.Retention{Input: 30 * 24 * time.Hour, Steps: 30 * 24 * time.Hour, Output: 30 * 24 * time.Hour})

	// A backup made before the purge.
	backup := filepath.Join(w.dir, "backup.db")
	if _, err := w.store.WriterDB().ExecContext(ctx, `VACUUM INTO ?`, backup); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rawInput(t, w.store, "run-old"), []byte("jane")) {
		t.Fatal("the input is stored in clear")
	}

	res, err := w.purger.PurgeExpired(ctx, "test")
	if err != nil || res.Purged != 0 {
		t.Fatalf("purge before anything expired: %+v, %v", res, err)
	}
	w.clock.add(2 * time.Hour)
	res, err = w.purger.PurgeExpired(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Purged != 3 || len(res.Runs) != 1 || res.Runs[0] != "run-old" {
		t.Fatalf("purge = %+v, want the three kinds of run-old", res)
	}
	run, err := w.store.GetRun(ctx, "run-old")
	if err != nil || run.Input != nil || run.Output != nil {
		t.Fatalf("purged run: input %q output %q, %v", run.Input, run.Output, err)
	}
	if steps, _ := w.store.ListSteps(ctx, "run-old"); len(steps) != 1 || steps[0].Output != nil {
		t.Fatalf("purged run's steps: %+v", steps)
	}
	if purges, _ := w.store.PayloadPurges(ctx, "run-old"); len(purges) != 3 {
		t.Fatalf("purges recorded: %v", purges)
	}
	kept, err := w.store.GetRun(ctx, "run-kept")
	if err != nil || !strings.Contains(string(kept.Input), "john@example.com") {
		t.Fatalf("the run not yet due: %q, %v", kept.Input, err)
	}

	// The backup still holds the purged run's sealed input, but nothing
	// opens it any more; the run not purged still opens from it.
	old, err := sqlite.Open(ctx, backup)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	field := store.PayloadField{RunID: "run-old", Kind: store.PayloadInput, Name: "input"}
	sealed := rawInput(t, old, "run-old")
	if len(sealed) == 0 {
		t.Fatal("the backup lacks the sealed input; the test proves nothing")
	}
	if _, err := w.cipher.Open(ctx, field, sealed); !errors.Is(err, store.ErrPayloadDestroyed) {
		t.Fatalf("opening the purged input from the backup: %v, want ErrPayloadDestroyed", err)
	}
	got, err := w.cipher.Open(ctx, store.PayloadField{RunID: "run-kept", Kind: store.PayloadInput, Name: "input"}, rawInput(t, old, "run-kept"))
	if err != nil || !strings.Contains(string(got), "john@example.com") {
		t.Fatalf("opening the kept input from the backup: %q, %v", got, err)
	}

	text := w.auditText(t)
	if !strings.Contains(text, "runs.purge requested") || !strings.Contains(text, "runs.purge ok") || !strings.Contains(text, "run-old/input") {
		t.Fatalf("the purge is not in the audit log:\n%s", text)
	}
}

// failingStore fails every write transaction, as a crash after the keys
// are destroyed and before the rows are would.
type failingStore struct {
	store.Store
	fail bool
}

func (s *failingStore) InTx(ctx context.Context, fn func(store.Tx) error) error {
	if s.fail {
		return errors.New("killed")
	}
	return s.Store.InTx(ctx, fn)
}

func TestInterruptedPurgeResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, retention.Rules{})
	w.finishedRun(t, "run-1", `{"email":"jane@example.com"}`, `{"answer":"x"}`, store.Retention{Input: time.Hour, Steps: time.Hour, Output: time.Hour})
	w.clock.add(2 * time.Hour)
	fs := &failingStore{Store: w.store, fail: true}
	p := *w.purger
	p.Store = fs
	if _, err := p.PurgeExpired(ctx, "test"); err == nil {
		t.Fatal("the interrupted purge reported success")
	}
	// The key went first: the input is erased already, though its row
	// is still there and not yet marked purged.
	if len(rawInput(t, w.store, "run-1")) == 0 {
		t.Fatal("the row was cleared although the purge stopped before")
	}
	if run, err := w.store.GetRun(ctx, "run-1"); err != nil || run.Input != nil {
		t.Fatalf("after the interrupted purge the input reads %q, %v", run.Input, err)
	}
	fs.fail = false
	res, err := p.PurgeExpired(ctx, "test")
	if err != nil || res.Purged != 3 {
		t.Fatalf("resumed purge: %+v, %v", res, err)
	}
	if raw := rawInput(t, w.store, "run-1"); raw != nil {
		t.Fatalf("the resumed purge left the row: %q", raw)
	}
	if res, _ := p.PurgeExpired(ctx, "test"); res.Purged != 0 {
		t.Fatalf("a third purge found %d more", res.Purged)
	}
}

// failingRecorder refuses every record.
type failingRecorder struct{}

func (failingRecorder) Append(context.Context, ...audit.Record) ([]int64, error) {
	return nil, errors.New("disk full")
}

func TestNothingIsDestroyedWithoutAnAuditRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, retention.Rules{})
	w.finishedRun(t, "run-1", `{"email":"jane@example.com"}`, `{"answer":"x"}`, store.Retention{Input: time.Hour, Steps: time.Hour, Output: time.Hour})
	w.clock.add(2 * time.Hour)
	p := *w.purger
	p.Audit = failingRecorder{}
	if _, err := p.PurgeExpired(ctx, "test"); err == nil {
		t.Fatal("purged without an audit record")
	}
	if _, err := p.Erase(ctx, "test", "jane@example.com", nil); err == nil {
		t.Fatal("erased without an audit record")
	}
	if run, err := w.store.GetRun(ctx, "run-1"); err != nil || !strings.Contains(string(run.Input), "jane") {
		t.Fatalf("the run was touched: %q, %v", run.Input, err)
	}
}

func TestEraseFindsEveryRunOfASubject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, retention.Rules{})
	forever := store.Retention{}
	w.finishedRun(t, "run-input", `{"email":"Jane.Doe@Example.com","card":"4111 1111 1111 1111"}`, `{"answer":"ok"}`, forever)
	w.finishedRun(t, "run-answer", `{"text":"who wrote this?"}`, `{"answer":"it was jane.doe@example.com"}`, forever)
	w.finishedRun(t, "run-card", `{"note":"card 4111-1111-1111-1111 declined"}`, `{"answer":"ok"}`, forever)
	w.finishedRun(t, "run-other", `{"email":"john@example.com"}`, `{"answer":"ok"}`, forever)
	if err := w.store.AddRunTokens(ctx, "run-other", []store.RunToken{{Token: "<PHONE_1>", Class: "pii.phone", Value: "+44 20 7946 0958", CreatedAt: w.clock.now()}}); err != nil {
		t.Fatal(err)
	}

	before := w.log.Size()
	_, err := w.purger.Erase(ctx, "test", "nobody@example.com", nil)
	if !errors.Is(err, retention.ErrNoSubject) {
		t.Fatalf("erasing an unknown subject: %v, want ErrNoSubject", err)
	}
	if w.log.Size() != before {
		t.Fatal("erasing an unknown subject wrote to the audit log")
	}

	res, err := w.purger.Erase(ctx, "test", "JANE.DOE@example.com ", nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Runs, ",") != "run-answer,run-input" {
		t.Fatalf("erased %v, want run-answer and run-input", res.Runs)
	}
	for _, id := range res.Runs {
		run, err := w.store.GetRun(ctx, id)
		if err != nil || run.Input != nil || run.Output != nil {
			t.Fatalf("erased run %s: input %q output %q, %v", id, run.Input, run.Output, err)
		}
	}
	// Spaces and dashes do not hide a card number.
	res, err = w.purger.Erase(ctx, "test", "4111111111111111", nil)
	if err != nil || strings.Join(res.Runs, ",") != "run-card" {
		t.Fatalf("erasing the card: %+v, %v (run-input was erased already, and with it its index)", res, err)
	}
	// A token's value is indexed too.
	res, err = w.purger.Erase(ctx, "test", "+442079460958", nil)
	if err != nil || strings.Join(res.Runs, ",") != "run-other" {
		t.Fatalf("erasing the phone: %+v, %v", res, err)
	}

	text := w.auditText(t)
	if strings.Contains(strings.ToLower(text), "jane.doe") || strings.Contains(text, "4111111111111111") {
		t.Fatalf("a subject is in the audit log in clear:\n%s", text)
	}
	if !strings.Contains(text, w.log.HMAC("jane.doe@example.com")) {
		t.Fatalf("the erased subject's HMAC is not in the audit log:\n%s", text)
	}
}

func TestClassRulesCapRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, retention.Rules{Classes: map[string]time.Duration{"pii.card": time.Hour}})
	long := store.Retention{Input: 90 * 24 * time.Hour, Steps: 90 * 24 * time.Hour, Output: 90 * 24 * time.Hour}
	w.finishedRun(t, "run-card", `{"note":"card 4111 1111 1111 1111"}`, `{"answer":"ok"}`, long)
	w.finishedRun(t, "run-plain", `{"note":"no card here"}`, `{"answer":"ok"}`, long)
	w.clock.add(2 * time.Hour)
	res, err := w.purger.PurgeExpired(ctx, "test")
	if err != nil || res.Purged != 3 || res.Runs[0] != "run-card" {
		t.Fatalf("purge: %+v, %v; want only run-card's payloads", res, err)
	}
}
