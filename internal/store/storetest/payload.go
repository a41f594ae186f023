package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// fakeSealer stands for the vault in the conformance suite: it reverses
// and tags payloads (so a test can tell sealed bytes from plain ones), binds
// them to their field, finds "subjects" (words holding '@') and caps
// retention at an hour for payloads mentioning "card".
type fakeSealer struct {
	mu        sync.Mutex
	destroyed map[string]bool // run + "/" + kind
}

func newFakeSealer() *fakeSealer { return &fakeSealer{destroyed: map[string]bool{}} }

func fieldTag(f store.PayloadField) string {
	return "sealed(" + f.RunID + "/" + f.Kind + "/" + f.Name + "):"
}

func subjectDigest(word string) []byte { d := sha256.Sum256([]byte(word)); return d[:] }

func (s *fakeSealer) Seal(_ context.Context, f store.PayloadField, plaintext []byte) (store.Sealed, error) {
	out := store.Sealed{Bytes: append([]byte(fieldTag(f)), reversed(plaintext)...)}
	for _, w := range strings.FieldsFunc(string(plaintext), func(r rune) bool { return strings.ContainsRune(` ",:{}[]`, r) }) {
		if strings.Contains(w, "@") {
			out.Subjects = append(out.Subjects, subjectDigest(w))
		}
	}
	if bytes.Contains(plaintext, []byte("card")) {
		out.KeepAtMost = time.Hour
	}
	return out, nil
}

func (s *fakeSealer) Open(_ context.Context, f store.PayloadField, sealed []byte) ([]byte, error) {
	s.mu.Lock()
	gone := s.destroyed[f.RunID+"/"+f.Kind]
	s.mu.Unlock()
	if gone {
		return nil, store.ErrPayloadDestroyed
	}
	rest, ok := bytes.CutPrefix(sealed, []byte(fieldTag(f)))
	if !ok {
		return nil, fmt.Errorf("fake sealer: %q was not sealed as %s", sealed, fieldTag(f))
	}
	return reversed(rest), nil
}

func (s *fakeSealer) destroy(runID, kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.destroyed[runID+"/"+kind] = true
}

func reversed(b []byte) []byte {
	out := slices.Clone(b)
	slices.Reverse(out)
	return out
}

// rawColumn reads one column as stored, bypassing the sealer.
func rawColumn(t *testing.T, s store.Store, query string, args ...any) []byte {
	t.Helper()
	if s.Dialect() == store.Postgres {
		for i := range args {
			query = strings.Replace(query, "?", fmt.Sprintf("$%d", i+1), 1)
		}
	}
	var b []byte
	must(t, s.WriterDB().QueryRowContext(t.Context(), query, args...).Scan(&b))
	return b
}

func testSealedPayloads(t *testing.T, s store.Store) {
	ctx := t.Context()
	sealer := newFakeSealer()
	s.SetPayloadSealer(sealer)
	wf, ver, _ := saveVersion(t, s, "p", "w", "h1", "", at(0))
	run := newRun(wf, ver, "run-1", at(0))
	run.Input = []byte(`{"email":"jane@example.com"}`)
	run.Retention = store.Retention{Input: 24 * time.Hour, Steps: 48 * time.Hour}
	must(t, s.CreateRun(ctx, run))

	if raw := rawColumn(t, s, `SELECT input FROM runs WHERE id = ?`, "run-1"); bytes.Contains(raw, []byte("jane@example.com")) {
		t.Fatalf("the input is stored in clear: %q", raw)
	}
	got, err := s.GetRun(ctx, "run-1")
	must(t, err)
	equal(t, "input read back", string(got.Input), string(run.Input))

	must(t, s.UpsertStep(ctx, store.Step{RunID: "run-1", StepID: "ask", Uses: "ai.chat", Status: store.StepSucceeded,
		Output: []byte(`{"answer":"your card ends 4242"}`), UpdatedAt: at(time.Second)}))
	step, err := s.GetStep(ctx, "run-1", "ask")
	must(t, err)
	equal(t, "step output read back", string(step.Output), `{"answer":"your card ends 4242"}`)
	if raw := rawColumn(t, s, `SELECT output FROM run_steps WHERE run_id = ? AND step_id = ?`, "run-1", "ask"); bytes.Contains(raw, []byte("4242")) {
		t.Fatalf("the step output is stored in clear: %q", raw)
	}

	task := store.Task{ID: "tsk-1", RunID: "run-1", StepID: "review", ProjectID: wf.ProjectID, Status: store.TaskPending,
		Title: "Refund for jane@example.com", Details: []byte(`{"amount":12}`), CreatedAt: at(time.Second)}
	must(t, s.CreateTask(ctx, task))
	if raw := rawColumn(t, s, `SELECT title FROM tasks WHERE id = ?`, "tsk-1"); bytes.Contains(raw, []byte("jane")) {
		t.Fatalf("the task title is stored in clear: %q", raw)
	}
	decided, err := s.DecideTask(ctx, "tsk-1", store.TaskApproved, "alice", "ok for jane@example.com", at(2*time.Second))
	must(t, err)
	equal(t, "decided title", decided.Title, task.Title)
	equal(t, "decided comment", decided.Comment, "ok for jane@example.com")
	tasks, err := s.ListTasks(ctx, store.TaskFilter{RunID: "run-1"})
	must(t, err)
	if len(tasks) != 1 || tasks[0].Title != task.Title || string(tasks[0].Details) != `{"amount":12}` {
		t.Fatalf("ListTasks = %+v", tasks)
	}

	// Token values are sealed alike each time, so the same value under
	// another token is still refused.
	tok := store.RunToken{Token: "<EMAIL_1>", Class: "pii.email", Value: "jane@example.com", CreatedAt: at(time.Second)}
	must(t, s.AddRunTokens(ctx, "run-1", []store.RunToken{tok}))
	must(t, s.AddRunTokens(ctx, "run-1", []store.RunToken{tok}))
	wantErr(t, s.AddRunTokens(ctx, "run-1", []store.RunToken{{Token: "<EMAIL_2>", Class: "pii.email", Value: "jane@example.com", CreatedAt: at(time.Second)}}), store.ErrConflict)
	tokens, err := s.LoadRunTokens(ctx, "run-1")
	must(t, err)
	equal(t, "tokens read back", tokens, []store.RunToken{tok})

	// Subjects found in any payload lead back to the run.
	runs, err := s.RunsWithSubjects(ctx, [][]byte{subjectDigest("jane@example.com")}, 10)
	must(t, err)
	equal(t, "runs with jane", runs, []string{"run-1"})
	runs, err = s.RunsWithSubjects(ctx, [][]byte{subjectDigest("nobody@example.com")}, 10)
	must(t, err)
	equal(t, "runs with nobody", len(runs), 0)

	// "card" in the step output capped every kind at an hour.
	finished := at(time.Minute)
	run.Status, run.FinishedAt, run.UpdatedAt, run.Output = store.RunSucceeded, &finished, finished, []byte(`"done"`)
	must(t, s.UpdateRun(ctx, run))
	due, err := s.ListExpiredPayloads(ctx, finished.Add(time.Hour), 10)
	must(t, err)
	equal(t, "due an hour after finishing", len(due), 3)

	// A destroyed kind reads as nothing.
	sealer.destroy("run-1", store.PayloadInput)
	got, err = s.GetRun(ctx, "run-1")
	must(t, err)
	if got.Input != nil || string(got.Output) != `"done"` {
		t.Fatalf("after destroying the input key: input %q, output %q", got.Input, got.Output)
	}
}

func testRetention(t *testing.T, s store.Store) {
	ctx := t.Context()
	wf, ver, _ := saveVersion(t, s, "p", "w", "h1", "", at(0))
	short := newRun(wf, ver, "run-short", at(0))
	short.Input, short.Output = []byte(`{"a":1}`), []byte(`{"b":2}`)
	short.Retention = store.Retention{Input: time.Hour, Steps: 2 * time.Hour, Output: 3 * time.Hour}
	forever := newRun(wf, ver, "run-forever", at(0))
	forever.Input = []byte(`{"a":2}`)
	running := newRun(wf, ver, "run-running", at(0))
	running.Retention = store.Retention{Input: time.Nanosecond * 1000, Steps: time.Hour, Output: time.Hour}
	for _, r := range []store.Run{short, forever, running} {
		must(t, s.CreateRun(ctx, r))
	}
	must(t, s.UpsertStep(ctx, store.Step{RunID: "run-short", StepID: "a", Status: store.StepSucceeded, Output: []byte(`{"c":3}`), UpdatedAt: at(0)}))
	must(t, s.CreateTask(ctx, store.Task{ID: "tsk-1", RunID: "run-short", StepID: "a", ProjectID: wf.ProjectID, Status: store.TaskPending,
		Title: "a title", Details: []byte(`{"d":4}`), CreatedAt: at(0)}))
	must(t, s.AddRunTokens(ctx, "run-short", []store.RunToken{{Token: "<EMAIL_1>", Class: "pii.email", Value: "x@example.com", CreatedAt: at(0)}}))

	// Nothing is due before runs finish, whatever their durations.
	due, err := s.ListExpiredPayloads(ctx, at(1000*time.Hour), 10)
	must(t, err)
	equal(t, "due before any run finished", len(due), 0)

	for _, r := range []store.Run{short, forever} {
		end := at(time.Minute)
		r.Status, r.FinishedAt, r.UpdatedAt = store.RunSucceeded, &end, end
		must(t, s.UpdateRun(ctx, r))
	}
	due, err = s.ListExpiredPayloads(ctx, at(time.Minute+2*time.Hour), 10)
	must(t, err)
	equal(t, "due after two hours", due, []store.ExpiredPayload{
		{RunID: "run-short", Kind: store.PayloadInput, ExpiresAt: at(time.Minute + time.Hour)},
		{RunID: "run-short", Kind: store.PayloadSteps, ExpiresAt: at(time.Minute + 2*time.Hour)},
	})
	_, err = s.ListExpiredPayloads(ctx, at(0), 0)
	wantErr(t, err, store.ErrInvalid)

	must(t, s.PurgePayload(ctx, "run-short", store.PayloadInput, at(3*time.Hour)))
	must(t, s.PurgePayload(ctx, "run-short", store.PayloadSteps, at(3*time.Hour)))
	// Purging again changes nothing, not even the time.
	must(t, s.PurgePayload(ctx, "run-short", store.PayloadSteps, at(4*time.Hour)))
	got, err := s.GetRun(ctx, "run-short")
	must(t, err)
	if got.Input != nil || string(got.Output) != `{"b":2}` {
		t.Fatalf("after purging input and steps: input %q, output %q", got.Input, got.Output)
	}
	step, err := s.GetStep(ctx, "run-short", "a")
	must(t, err)
	equal(t, "purged step output", step.Output, []byte(nil))
	task, err := s.GetTask(ctx, "tsk-1")
	must(t, err)
	if task.Title != "" || task.Details != nil {
		t.Fatalf("purged task: %+v", task)
	}
	tokens, err := s.LoadRunTokens(ctx, "run-short")
	must(t, err)
	equal(t, "purged tokens", len(tokens), 0)
	purges, err := s.PayloadPurges(ctx, "run-short")
	must(t, err)
	equal(t, "purges", purges, map[string]time.Time{store.PayloadInput: at(3 * time.Hour), store.PayloadSteps: at(3 * time.Hour)})

	due, err = s.ListExpiredPayloads(ctx, at(1000*time.Hour), 10)
	must(t, err)
	equal(t, "due at last", due, []store.ExpiredPayload{{RunID: "run-short", Kind: store.PayloadOutput, ExpiresAt: at(time.Minute + 3*time.Hour)}})

	// A run kept until erased is purged on demand all the same.
	must(t, s.PurgePayload(ctx, "run-forever", store.PayloadInput, at(time.Hour)))
	purges, err = s.PayloadPurges(ctx, "run-forever")
	must(t, err)
	equal(t, "purges of run-forever", len(purges), 1)

	wantErr(t, s.PurgePayload(ctx, "run-none", store.PayloadInput, at(0)), store.ErrNotFound)
	wantErr(t, s.PurgePayload(ctx, "run-short", "secrets", at(0)), store.ErrInvalid)
}

// RunKeys is the conformance suite of store.RunKeyStore implementations.
func RunKeys(t *testing.T, open func(t *testing.T) store.RunKeyStore) {
	t.Parallel()
	ctx := t.Context()
	ks := open(t)
	key := func(run, kind string, term uint32) store.RunKey {
		return store.RunKey{RunID: run, Kind: kind, Term: term, Wrapped: []byte("wrapped-" + run + "-" + kind), CreatedAt: at(0)}
	}
	must(t, ks.PutRunKeys(ctx, []store.RunKey{key("run-1", "input", 1), key("run-1", "steps", 1), key("run-2", "input", 2)}))
	got, err := ks.GetRunKey(ctx, "run-1", "steps")
	must(t, err)
	equal(t, "key read back", got, key("run-1", "steps", 1))
	_, err = ks.GetRunKey(ctx, "run-9", "input")
	wantErr(t, err, store.ErrNotFound)

	// A batch with one existing key stores none of its keys.
	err = ks.PutRunKeys(ctx, []store.RunKey{key("run-3", "input", 1), key("run-1", "input", 1)})
	wantErr(t, err, store.ErrConflict)
	_, err = ks.GetRunKey(ctx, "run-3", "input")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, ks.PutRunKeys(ctx, []store.RunKey{{RunID: "run-4", Kind: "input", Term: 1}}), store.ErrInvalid)

	below, err := ks.ListRunKeysBelowTerm(ctx, 2, 10)
	must(t, err)
	equal(t, "keys below term 2", len(below), 2)
	moved := below[0]
	moved.Term, moved.Wrapped = 2, []byte("rewrapped")
	ok, err := ks.RewrapRunKey(ctx, moved, 1)
	must(t, err)
	equal(t, "rewrapped", ok, true)
	ok, err = ks.RewrapRunKey(ctx, moved, 1)
	must(t, err)
	equal(t, "rewrapped from a stale term", ok, false)

	must(t, ks.DestroyRunKeys(ctx, []store.RunKeyRef{{RunID: "run-1", Kind: "input"}}, at(time.Hour)))
	must(t, ks.DestroyRunKeys(ctx, []store.RunKeyRef{{RunID: "run-1", Kind: "input"}, {RunID: "run-2", Kind: "input"}}, at(2*time.Hour)))
	got, err = ks.GetRunKey(ctx, "run-1", "input")
	must(t, err)
	if got.Wrapped != nil || got.DestroyedAt == nil || !got.DestroyedAt.Equal(at(time.Hour)) {
		t.Fatalf("destroyed key = %+v", got)
	}
	got, err = ks.GetRunKey(ctx, "run-2", "input")
	must(t, err)
	if got.Wrapped != nil || got.DestroyedAt == nil || !got.DestroyedAt.Equal(at(2*time.Hour)) {
		t.Fatalf("key destroyed in a batch = %+v", got)
	}
	// Destroying a key never made leaves a tombstone, so it cannot be
	// made afterwards.
	must(t, ks.DestroyRunKeys(ctx, []store.RunKeyRef{{RunID: "run-5", Kind: "output"}}, at(time.Hour)))
	err = ks.PutRunKeys(ctx, []store.RunKey{key("run-5", "output", 1)})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("making a destroyed key again: %v, want ErrConflict", err)
	}
	below, err = ks.ListRunKeysBelowTerm(ctx, 10, 10)
	must(t, err)
	for _, k := range below {
		if k.Wrapped == nil {
			t.Fatalf("a destroyed key is listed for rewrap: %+v", k)
		}
	}
}
