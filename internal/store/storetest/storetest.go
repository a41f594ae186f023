// Package storetest is the conformance suite every store.Store
// implementation passes: the same behaviour on SQLite and on Postgres.
package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/store"
)

// Run runs the suite. open must return a new, empty, migrated store and
// close it when the test ends; subtests run in parallel, each on its own
// store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"Handle", testHandle},
		{"Projects", testProjects},
		{"SaveWorkflowVersion", testSaveWorkflowVersion},
		{"ConcurrentSaves", testConcurrentSaves},
		{"WebhookConflict", testWebhookConflict},
		{"RunRoundTrip", testRunRoundTrip},
		{"UpdateRun", testUpdateRun},
		{"ListRuns", testListRuns},
		{"ListRunsLimits", testListRunsLimits},
		{"Steps", testSteps},
		{"Attempts", testAttempts},
		{"Tasks", testTasks},
		{"DecideTask", testDecideTask},
		{"Tokens", testTokens},
		{"InTxRollback", testInTxRollback},
		{"InTxCommit", testInTxCommit},
		{"NotFound", testNotFound},
		{"Resources", testResources},
		{"ResourcesInTx", testResourcesInTx},
		{"RunTokens", testRunTokens},
		{"VaultState", testVaultState},
		{"Secrets", testSecrets},
		{"Audit", testAudit},
		{"SealedPayloads", testSealedPayloads},
		{"Retention", testRetention},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, open(t))
		})
	}
}

// t0 is a fixed instant with microsecond precision, what the store keeps.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ptr(t time.Time) *time.Time { return &t }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
	if !strings.HasPrefix(err.Error(), "store: ") {
		t.Fatalf("error %q lacks the store: prefix", err)
	}
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// saveVersion saves a version of project/name with the given hash and
// webhook path.
func saveVersion(t *testing.T, q store.Queries, project, name, hash, webhook string, when time.Time) (store.Workflow, store.Version, bool) {
	t.Helper()
	wf, ver, created, err := q.SaveWorkflowVersion(t.Context(), store.NewVersion{
		Project:     project,
		Name:        name,
		Hash:        hash,
		Definition:  []byte(`{"name":"` + name + `","hash":"` + hash + `"}`),
		Source:      []byte("name: " + name + "\n# " + hash + "\n"),
		WebhookPath: webhook,
		At:          when,
	})
	if err != nil {
		t.Fatalf("save %s/%s %s: %v", project, name, hash, err)
	}
	return wf, ver, created
}

// newRun returns a pending run of ver created at when.
func newRun(wf store.Workflow, ver store.Version, id string, when time.Time) store.Run {
	return store.Run{
		ID: id, ProjectID: wf.ProjectID, WorkflowID: wf.ID, VersionID: ver.ID,
		Status: store.RunPending, Trigger: "manual", CreatedAt: when, UpdatedAt: when,
	}
}

func testHandle(t *testing.T, s store.Store) {
	must(t, s.Ping(t.Context()))
	if d := s.Dialect(); d != store.SQLite && d != store.Postgres {
		t.Fatalf("Dialect() = %q", d)
	}
	if s.WriterDB() == nil {
		t.Fatal("WriterDB() is nil")
	}
	must(t, s.WriterDB().PingContext(t.Context()))
}

func testProjects(t *testing.T, s store.Store) {
	ctx := t.Context()
	p := store.Project{ID: "p-1", Name: "support", Description: "Support desk", CreatedAt: at(0), UpdatedAt: at(0)}
	got, err := s.UpsertProject(ctx, p)
	must(t, err)
	equal(t, "inserted", got, p)

	// Upserting the same name updates it but keeps its id and creation time.
	got, err = s.UpsertProject(ctx, store.Project{ID: "p-2", Name: "support", Description: "Help", CreatedAt: at(time.Hour), UpdatedAt: at(time.Hour)})
	must(t, err)
	want := store.Project{ID: "p-1", Name: "support", Description: "Help", CreatedAt: at(0), UpdatedAt: at(time.Hour)}
	equal(t, "updated", got, want)
	got, err = s.GetProject(ctx, "support")
	must(t, err)
	equal(t, "get", got, want)

	alpha := store.Project{ID: "p-3", Name: "alpha", CreatedAt: at(2 * time.Hour), UpdatedAt: at(2 * time.Hour)}
	_, err = s.UpsertProject(ctx, alpha)
	must(t, err)
	list, err := s.ListProjects(ctx)
	must(t, err)
	equal(t, "list", list, []store.Project{alpha, want})

	// Another name under an id already taken.
	_, err = s.UpsertProject(ctx, store.Project{ID: "p-1", Name: "other", CreatedAt: at(0), UpdatedAt: at(0)})
	wantErr(t, err, store.ErrConflict)
}

func testSaveWorkflowVersion(t *testing.T, s store.Store) {
	ctx := t.Context()
	steps := []struct {
		name        string
		hash        string
		webhook     string
		schedule    string
		wantCreated bool
		wantNumber  int
	}{
		{"first version", "h1", "tickets", "", true, 1},
		{"same hash again", "h1", "tickets", "", false, 1},
		{"new hash", "h2", "tickets-v2", "*/5 * * * *", true, 2},
		{"earlier hash is new again", "h1", "", "", true, 3},
	}
	var first store.Workflow
	var latest store.Version
	for i, step := range steps {
		when := at(time.Duration(i) * time.Minute)
		wf, ver, created, err := s.SaveWorkflowVersion(ctx, store.NewVersion{
			Project: "support", Name: "triage", Hash: step.hash,
			Definition: []byte(`{"v":"` + step.hash + `"}`), Source: []byte{0, 1, 2, 0xff},
			WebhookPath: step.webhook, Schedule: step.schedule, At: when,
		})
		must(t, err)
		if i == 0 {
			first = wf
		}
		if created != step.wantCreated || ver.Number != step.wantNumber {
			t.Fatalf("%s: created=%v number=%d, want %v %d", step.name, created, ver.Number, step.wantCreated, step.wantNumber)
		}
		if step.wantCreated {
			latest = store.Version{
				ID: ver.ID, WorkflowID: first.ID, Number: step.wantNumber, Hash: step.hash,
				Definition: []byte(`{"v":"` + step.hash + `"}`), Source: []byte{0, 1, 2, 0xff}, CreatedAt: when,
			}
		}
		equal(t, step.name+": version", ver, latest)

		project, err := s.GetProject(ctx, "support")
		must(t, err)
		wantWF := store.Workflow{
			ID: first.ID, ProjectID: project.ID, Project: "support", Name: "triage",
			LatestVersion: latest.Number, LatestID: latest.ID,
			WebhookPath: step.webhook, Schedule: step.schedule,
			CreatedAt: at(0), UpdatedAt: latest.CreatedAt,
		}
		equal(t, step.name+": workflow", wf, wantWF)
		got, err := s.GetWorkflow(ctx, "support", "triage")
		must(t, err)
		equal(t, step.name+": GetWorkflow", got, wantWF)
		got, err = s.GetWorkflowByID(ctx, wf.ID)
		must(t, err)
		equal(t, step.name+": GetWorkflowByID", got, wantWF)
		gotVer, err := s.GetVersion(ctx, ver.ID)
		must(t, err)
		equal(t, step.name+": GetVersion", gotVer, latest)
	}

	versions, err := s.ListVersions(ctx, first.ID)
	must(t, err)
	var numbers []int
	var hashes []string
	for _, v := range versions {
		numbers = append(numbers, v.Number)
		hashes = append(hashes, v.Hash)
	}
	equal(t, "version numbers", numbers, []int{1, 2, 3})
	equal(t, "version hashes", hashes, []string{"h1", "h2", "h1"})
	v2, err := s.GetVersionByNumber(ctx, first.ID, 2)
	must(t, err)
	equal(t, "version 2", v2, versions[1])

	// The project was created by the first save, and lists its workflow.
	other, _, _ := saveVersion(t, s, "support", "billing", "b1", "", at(time.Hour))
	_, _, _ = saveVersion(t, s, "sales", "leads", "l1", "", at(time.Hour))
	wfs, err := s.ListWorkflows(ctx, "support")
	must(t, err)
	if len(wfs) != 2 || wfs[0].ID != other.ID || wfs[1].ID != first.ID {
		t.Fatalf("ListWorkflows(support) = %+v, want billing then triage", wfs)
	}
	all, err := s.ListWorkflows(ctx, "")
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("ListWorkflows(\"\") returned %d workflows, want 3", len(all))
	}
}

// testConcurrentSaves checks that saves of one workflow racing each other
// number their versions without gaps or duplicates.
func testConcurrentSaves(t *testing.T, s store.Store) {
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	numbers := make([]int, n)
	for i := range n {
		wg.Go(func() {
			_, ver, _, err := s.SaveWorkflowVersion(t.Context(), store.NewVersion{
				Project: "support", Name: "triage", Hash: fmt.Sprintf("h%d", i), At: at(0),
			})
			errs[i], numbers[i] = err, ver.Number
		})
	}
	wg.Wait()
	must(t, errors.Join(errs...))
	slices.Sort(numbers)
	equal(t, "version numbers", numbers, []int{1, 2, 3, 4, 5, 6})
}

func testWebhookConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, _, _ := saveVersion(t, s, "support", "triage", "a1", "hooks/tickets", at(0))

	_, _, _, err := s.SaveWorkflowVersion(ctx, store.NewVersion{
		Project: "sales", Name: "leads", Hash: "b1", WebhookPath: "hooks/tickets", At: at(time.Minute),
	})
	wantErr(t, err, store.ErrConflict)
	for _, part := range []string{"hooks/tickets", "support/triage"} {
		if !strings.Contains(err.Error(), part) {
			t.Fatalf("conflict error %q does not name %q", err, part)
		}
	}
	// The refused save left nothing behind.
	_, err = s.GetProject(ctx, "sales")
	wantErr(t, err, store.ErrNotFound)

	// A workflow keeps its own path across versions.
	_, ver, created := saveVersion(t, s, "support", "triage", "a2", "hooks/tickets", at(2*time.Minute))
	if !created || ver.Number != 2 {
		t.Fatalf("new version of the path holder: created=%v number=%d", created, ver.Number)
	}
	got, err := s.FindWebhook(ctx, "hooks/tickets")
	must(t, err)
	if got.ID != a.ID {
		t.Fatalf("FindWebhook = %s, want %s", got.ID, a.ID)
	}

	// Once the holder's latest version moves away, the path is free.
	saveVersion(t, s, "support", "triage", "a3", "hooks/other", at(3*time.Minute))
	b, _, _ := saveVersion(t, s, "sales", "leads", "b1", "hooks/tickets", at(4*time.Minute))
	got, err = s.FindWebhook(ctx, "hooks/tickets")
	must(t, err)
	equal(t, "FindWebhook after the move", got, b)
	// Workflows without a webhook do not answer the empty path.
	saveVersion(t, s, "sales", "quiet", "q1", "", at(5*time.Minute))
	_, err = s.FindWebhook(ctx, "")
	wantErr(t, err, store.ErrNotFound)
}

func testRunRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	wf, ver, _ := saveVersion(t, s, "support", "triage", "h1", "", at(0))
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	tests := []struct {
		name string
		run  store.Run
		want store.Run // zero: same as run
	}{
		{name: "minimal", run: newRun(wf, ver, "run-min", at(time.Second))},
		{name: "every field", run: store.Run{
			ID: "run-full", ProjectID: wf.ProjectID, WorkflowID: wf.ID, VersionID: ver.ID,
			Status: store.RunRunning, Trigger: "webhook",
			Input: []byte{0x00, 0x01, 0xfe, 0xff, '{', '}'}, Output: []byte(`{"label":"refund"}`),
			Error: "step classify: timeout", CreatedAt: at(2 * time.Second), UpdatedAt: at(3 * time.Second),
			StartedAt: ptr(at(2500 * time.Millisecond)), FinishedAt: ptr(at(4 * time.Second)),
		}},
		{
			name: "times kept to the microsecond in UTC",
			run: store.Run{
				ID: "run-zone", ProjectID: wf.ProjectID, WorkflowID: wf.ID, VersionID: ver.ID,
				Status: store.RunPending, Trigger: "cli",
				CreatedAt: time.Date(2025, 6, 1, 12, 0, 0, 123456789, zone),
				UpdatedAt: time.Date(2025, 6, 1, 12, 0, 1, 999, zone),
				StartedAt: ptr(time.Date(2025, 6, 1, 12, 0, 2, 1000, zone)),
			},
			want: store.Run{
				ID: "run-zone", ProjectID: wf.ProjectID, WorkflowID: wf.ID, VersionID: ver.ID,
				Status: store.RunPending, Trigger: "cli",
				CreatedAt: time.Date(2025, 6, 1, 6, 30, 0, 123456000, time.UTC),
				UpdatedAt: time.Date(2025, 6, 1, 6, 30, 1, 0, time.UTC),
				StartedAt: ptr(time.Date(2025, 6, 1, 6, 30, 2, 1000, time.UTC)),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			must(t, s.CreateRun(ctx, tc.run))
			want := tc.want
			if want.ID == "" {
				want = tc.run
			}
			got, err := s.GetRun(ctx, tc.run.ID)
			must(t, err)
			equal(t, "run", got, want)
			wantErr(t, s.CreateRun(ctx, tc.run), store.ErrConflict)
		})
	}
}

func testUpdateRun(t *testing.T, s store.Store) {
	ctx := t.Context()
	wf, ver, _ := saveVersion(t, s, "support", "triage", "h1", "", at(0))
	r := newRun(wf, ver, "run-1", at(time.Second))
	r.Input = []byte("input")
	must(t, s.CreateRun(ctx, r))

	running := r
	running.Status, running.StartedAt, running.UpdatedAt = store.RunRunning, ptr(at(2*time.Second)), at(2*time.Second)
	succeeded := running
	succeeded.Status, succeeded.Output, succeeded.FinishedAt, succeeded.UpdatedAt = store.RunSucceeded, []byte("out"), ptr(at(3*time.Second)), at(3*time.Second)

	tests := []struct {
		name    string
		update  store.Run
		wantErr error
		want    store.Run // what GetRun returns afterwards
	}{
		{"start", running, nil, running},
		{"finish", succeeded, nil, succeeded},
		{"reopen a final run", running, store.ErrConflict, succeeded},
		{"finish a final run again", func() store.Run { f := succeeded; f.Status = store.RunFailed; return f }(), store.ErrConflict, succeeded},
		{"missing run", func() store.Run { m := running; m.ID = "run-missing"; return m }(), store.ErrNotFound, succeeded},
	}
	for _, tc := range tests {
		// Input, trigger and creation are not UpdateRun's to change.
		update := tc.update
		update.Input, update.Trigger, update.CreatedAt = []byte("ignored"), "ignored", at(time.Hour)
		err := s.UpdateRun(ctx, update)
		if tc.wantErr == nil {
			must(t, err)
		} else {
			wantErr(t, err, tc.wantErr)
		}
		got, err := s.GetRun(ctx, r.ID)
		must(t, err)
		equal(t, tc.name, got, tc.want)
	}
}

func testListRuns(t *testing.T, s store.Store) {
	ctx := t.Context()
	wfA, verA, _ := saveVersion(t, s, "support", "triage", "a1", "", at(0))
	wfB, verB, _ := saveVersion(t, s, "sales", "leads", "b1", "", at(0))
	statuses := []store.RunStatus{store.RunSucceeded, store.RunFailed, store.RunRunning}

	var all []store.Run
	must(t, s.InTx(ctx, func(tx store.Tx) error {
		for i := range 14 {
			wf, ver := wfA, verA
			if i%3 == 2 {
				wf, ver = wfB, verB
			}
			// Pairs of runs share a creation time, so the id breaks ties.
			r := newRun(wf, ver, fmt.Sprintf("run-%02d", i), at(time.Duration(i/2)*time.Second))
			r.Status = statuses[i%len(statuses)]
			if err := tx.CreateRun(ctx, r); err != nil {
				return err
			}
			all = append(all, r)
		}
		return nil
	}))
	// Newest first, by (created, id).
	slices.SortFunc(all, func(a, b store.Run) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})

	tests := []struct {
		name   string
		filter store.RunFilter
		keep   func(store.Run) bool
	}{
		{"all, pages of 3", store.RunFilter{Limit: 3}, func(store.Run) bool { return true }},
		{"all, page size divides the count", store.RunFilter{Limit: 7}, func(store.Run) bool { return true }},
		{"one page", store.RunFilter{}, func(store.Run) bool { return true }},
		{"workflow", store.RunFilter{WorkflowID: wfA.ID, Limit: 2}, func(r store.Run) bool { return r.WorkflowID == wfA.ID }},
		{"project", store.RunFilter{ProjectID: wfB.ProjectID, Limit: 2}, func(r store.Run) bool { return r.ProjectID == wfB.ProjectID }},
		{"status", store.RunFilter{Status: store.RunFailed, Limit: 2}, func(r store.Run) bool { return r.Status == store.RunFailed }},
		{"workflow and status", store.RunFilter{WorkflowID: wfA.ID, Status: store.RunSucceeded, Limit: 1},
			func(r store.Run) bool { return r.WorkflowID == wfA.ID && r.Status == store.RunSucceeded }},
		{"project, workflow and status", store.RunFilter{ProjectID: wfA.ProjectID, WorkflowID: wfA.ID, Status: store.RunRunning, Limit: 2},
			func(r store.Run) bool { return r.WorkflowID == wfA.ID && r.Status == store.RunRunning }},
		{"nothing matches", store.RunFilter{Status: store.RunCancelled}, func(r store.Run) bool { return false }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want, got []store.Run
			for _, r := range all {
				if tc.keep(r) {
					want = append(want, r)
				}
			}
			f := tc.filter
			for page := 0; ; page++ {
				if page > len(all) {
					t.Fatal("pagination does not end")
				}
				runs, next, err := s.ListRuns(ctx, f)
				must(t, err)
				if limit := cmpOr(f.Limit, 50); len(runs) > limit || (next != "" && len(runs) != limit) {
					t.Fatalf("page %d has %d runs, limit %d, next %q", page, len(runs), limit, next)
				}
				if len(runs) == 0 && page > 0 {
					t.Fatalf("page %d is empty: the previous page should have had no cursor", page)
				}
				got = append(got, runs...)
				if next == "" {
					break
				}
				f.Cursor = next
			}
			equal(t, "runs", got, want)
		})
	}

	if _, _, err := s.ListRuns(ctx, store.RunFilter{Cursor: "not a cursor!"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ListRuns with a malformed cursor: %v, want ErrInvalid", err)
	}
}

func cmpOr(v, fallback int) int {
	if v == 0 {
		return fallback
	}
	return v
}

func testListRunsLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	wf, ver, _ := saveVersion(t, s, "support", "triage", "h1", "", at(0))
	must(t, s.InTx(ctx, func(tx store.Tx) error {
		for i := range 501 {
			if err := tx.CreateRun(ctx, newRun(wf, ver, fmt.Sprintf("run-%03d", i), at(time.Duration(i)*time.Millisecond))); err != nil {
				return err
			}
		}
		return nil
	}))
	tests := []struct {
		limit, want int
	}{{0, 50}, {-1, 50}, {1, 1}, {500, 500}, {501, 500}, {10000, 500}}
	for _, tc := range tests {
		runs, next, err := s.ListRuns(ctx, store.RunFilter{Limit: tc.limit})
		must(t, err)
		if len(runs) != tc.want || next == "" {
			t.Fatalf("Limit %d: %d runs, next %q; want %d runs and a cursor", tc.limit, len(runs), next, tc.want)
		}
		if runs[0].ID != "run-500" {
			t.Fatalf("Limit %d: first run %s, want the newest, run-500", tc.limit, runs[0].ID)
		}
	}
}

func testSteps(t *testing.T, s store.Store) {
	ctx := t.Context()
	wf, ver, _ := saveVersion(t, s, "support", "triage", "h1", "", at(0))
	must(t, s.CreateRun(ctx, newRun(wf, ver, "run-1", at(0))))
	must(t, s.CreateRun(ctx, newRun(wf, ver, "run-2", at(0))))

	classify := store.Step{RunID: "run-1", StepID: "classify", Uses: "ai.classify", Status: store.StepPending, UpdatedAt: at(time.Second)}
	route := store.Step{RunID: "run-1", StepID: "route", Uses: "switch", Status: store.StepSucceeded,
		Output: []byte(`{"next":"reply"}`), Next: []string{"reply"}, StartedAt: ptr(at(2 * time.Second)), FinishedAt: ptr(at(2 * time.Second)), UpdatedAt: at(2 * time.Second)}
	// Next distinguishes nil (every successor) from empty (none).
	child := store.Step{RunID: "run-1", StepID: "fan[0]", Uses: "http.request", Status: store.StepQueued, Next: []string{}, UpdatedAt: at(3 * time.Second)}
	elsewhere := store.Step{RunID: "run-2", StepID: "classify", Uses: "ai.classify", Status: store.StepRunning, UpdatedAt: at(time.Second)}
	for _, st := range []store.Step{classify, route, child, elsewhere} {
		must(t, s.UpsertStep(ctx, st))
	}
	// A later write to the first step replaces every field.
	classify = store.Step{RunID: "run-1", StepID: "classify", Uses: "ai.classify", Status: store.StepFailed,
		Output: []byte{0, 0xff}, Error: "upstream 503", Attempts: 3,
		StartedAt: ptr(at(time.Second)), FinishedAt: ptr(at(4 * time.Second)), UpdatedAt: at(4 * time.Second)}
	must(t, s.UpsertStep(ctx, classify))

	got, err := s.GetStep(ctx, "run-1", "classify")
	must(t, err)
	equal(t, "GetStep", got, classify)
	got, err = s.GetStep(ctx, "run-1", "fan[0]")
	must(t, err)
	equal(t, "GetStep foreach child", got, child)
	// Steps come in the order the run first reached them.
	list, err := s.ListSteps(ctx, "run-1")
	must(t, err)
	equal(t, "ListSteps", list, []store.Step{classify, route, child})
}

func testAttempts(t *testing.T, s store.Store) {
	ctx := t.Context()
	wf, ver, _ := saveVersion(t, s, "support", "triage", "h1", "", at(0))
	must(t, s.CreateRun(ctx, newRun(wf, ver, "run-1", at(0))))
	must(t, s.CreateRun(ctx, newRun(wf, ver, "run-2", at(0))))

	first := store.Attempt{RunID: "run-1", StepID: "classify", Number: 1, Status: store.AttemptRunning,
		IdempotencyKey: "run-1/classify/1", StartedAt: at(time.Second)}
	must(t, s.UpsertAttempt(ctx, first))
	first.Status, first.Error, first.FinishedAt = store.AttemptFailed, "timeout", ptr(at(2*time.Second))
	must(t, s.UpsertAttempt(ctx, first))
	second := store.Attempt{RunID: "run-1", StepID: "classify", Number: 2, Status: store.AttemptSucceeded,
		IdempotencyKey: "run-1/classify/2", StartedAt: at(3 * time.Second), FinishedAt: ptr(at(4 * time.Second))}
	reply := store.Attempt{RunID: "run-1", StepID: "reply", Number: 1, Status: store.AttemptRunning,
		IdempotencyKey: "run-1/reply/1", StartedAt: at(5 * time.Second)}
	other := store.Attempt{RunID: "run-2", StepID: "classify", Number: 1, Status: store.AttemptRunning,
		IdempotencyKey: "run-2/classify/1", StartedAt: at(0)}
	for _, a := range []store.Attempt{reply, second, other} {
		must(t, s.UpsertAttempt(ctx, a))
	}
	list, err := s.ListAttempts(ctx, "run-1")
	must(t, err)
	equal(t, "ListAttempts", list, []store.Attempt{first, second, reply})
}

// seedTasks makes two runs in two projects and three tasks, oldest first.
func seedTasks(t *testing.T, s store.Store) []store.Task {
	ctx := t.Context()
	wfA, verA, _ := saveVersion(t, s, "support", "triage", "a1", "", at(0))
	wfB, verB, _ := saveVersion(t, s, "sales", "leads", "b1", "", at(0))
	must(t, s.CreateRun(ctx, newRun(wfA, verA, "run-a", at(0))))
	must(t, s.CreateRun(ctx, newRun(wfB, verB, "run-b", at(0))))
	tasks := []store.Task{
		{ID: "task-1", RunID: "run-a", StepID: "review", ProjectID: wfA.ProjectID, Status: store.TaskPending,
			Role: "reviewer", Title: "Refund over limit", Details: []byte(`{"amount":1200}`),
			CreatedAt: at(time.Second), ExpiresAt: ptr(at(24 * time.Hour))},
		{ID: "task-2", RunID: "run-b", StepID: "approve", ProjectID: wfB.ProjectID, Status: store.TaskPending,
			Title: "New lead", CreatedAt: at(2 * time.Second)},
		{ID: "task-3", RunID: "run-a", StepID: "review-2", ProjectID: wfA.ProjectID, Status: store.TaskApproved,
			Title: "Second look", DecidedBy: "rita", Comment: "fine",
			CreatedAt: at(3 * time.Second), DecidedAt: ptr(at(4 * time.Second))},
	}
	// Created out of order: listing sorts by creation.
	for _, i := range []int{2, 0, 1} {
		must(t, s.CreateTask(ctx, tasks[i]))
	}
	return tasks
}

func testTasks(t *testing.T, s store.Store) {
	ctx := t.Context()
	tasks := seedTasks(t, s)
	for _, want := range tasks {
		got, err := s.GetTask(ctx, want.ID)
		must(t, err)
		equal(t, "GetTask", got, want)
	}
	wantErr(t, s.CreateTask(ctx, tasks[0]), store.ErrConflict)

	tests := []struct {
		name   string
		filter store.TaskFilter
		want   []store.Task
	}{
		{"all", store.TaskFilter{}, tasks},
		{"project", store.TaskFilter{ProjectID: tasks[0].ProjectID}, []store.Task{tasks[0], tasks[2]}},
		{"run", store.TaskFilter{RunID: "run-b"}, []store.Task{tasks[1]}},
		{"status", store.TaskFilter{Status: store.TaskPending}, []store.Task{tasks[0], tasks[1]}},
		{"project and status", store.TaskFilter{ProjectID: tasks[0].ProjectID, Status: store.TaskApproved}, []store.Task{tasks[2]}},
		{"run and status", store.TaskFilter{RunID: "run-a", Status: store.TaskPending}, []store.Task{tasks[0]}},
		{"limit", store.TaskFilter{Limit: 2}, tasks[:2]},
		{"nothing matches", store.TaskFilter{Status: store.TaskExpired}, nil},
	}
	for _, tc := range tests {
		got, err := s.ListTasks(ctx, tc.filter)
		must(t, err)
		equal(t, tc.name, got, tc.want)
	}
}

func testDecideTask(t *testing.T, s store.Store) {
	ctx := t.Context()
	tasks := seedTasks(t, s)
	decided := tasks[0]
	decided.Status, decided.DecidedBy, decided.Comment, decided.DecidedAt = store.TaskApproved, "rita", "within policy", ptr(at(time.Hour))

	tests := []struct {
		name    string
		id      string
		status  store.TaskStatus
		wantErr error // nil: succeeds
		want    store.Task
	}{
		{"approve a pending task", "task-1", store.TaskApproved, nil, decided},
		{"decide it again", "task-1", store.TaskRejected, store.ErrConflict, decided},
		{"decide an approved task", "task-3", store.TaskRejected, store.ErrConflict, tasks[2]},
		{"missing task", "task-9", store.TaskApproved, store.ErrNotFound, store.Task{}},
	}
	for _, tc := range tests {
		got, err := s.DecideTask(ctx, tc.id, tc.status, "rita", "within policy", at(time.Hour))
		if tc.wantErr != nil {
			wantErr(t, err, tc.wantErr)
		} else {
			must(t, err)
			equal(t, tc.name+": returned", got, tc.want)
		}
		if tc.want.ID != "" {
			stored, err := s.GetTask(ctx, tc.id)
			must(t, err)
			equal(t, tc.name+": stored", stored, tc.want)
		}
	}

	// Pending is not a decision.
	if _, err := s.DecideTask(ctx, "task-2", store.TaskPending, "rita", "", at(time.Hour)); err == nil {
		t.Fatal("DecideTask accepted pending as a decision")
	}
	got, err := s.GetTask(ctx, "task-2")
	must(t, err)
	equal(t, "task-2 after a refused decision", got, tasks[1])
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	n, err := s.CountTokens(ctx)
	must(t, err)
	if n != 0 {
		t.Fatalf("CountTokens on an empty store = %d", n)
	}
	hash := func(token string) []byte { h := sha256.Sum256([]byte(token)); return h[:] }
	admin := store.Token{ID: "tok-1", Name: "bootstrap", Hash: hash("moat_a"), Role: "admin", CreatedAt: at(0)}
	ci := store.Token{ID: "tok-2", Name: "ci", Hash: hash("moat_b"), Role: "integrator", CreatedAt: at(time.Second), LastUsedAt: ptr(at(2 * time.Second))}
	must(t, s.CreateToken(ctx, admin))
	must(t, s.CreateToken(ctx, ci))
	n, err = s.CountTokens(ctx)
	must(t, err)
	if n != 2 {
		t.Fatalf("CountTokens = %d, want 2", n)
	}
	for _, want := range []store.Token{admin, ci} {
		got, err := s.FindToken(ctx, want.Hash)
		must(t, err)
		equal(t, "FindToken", got, want)
	}

	must(t, s.TouchToken(ctx, "tok-1", at(time.Hour)))
	got, err := s.FindToken(ctx, admin.Hash)
	must(t, err)
	admin.LastUsedAt = ptr(at(time.Hour))
	equal(t, "after TouchToken", got, admin)

	_, err = s.FindToken(ctx, hash("moat_unknown"))
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.TouchToken(ctx, "tok-9", at(time.Hour)), store.ErrNotFound)
	// The same secret cannot be registered twice.
	wantErr(t, s.CreateToken(ctx, store.Token{ID: "tok-3", Name: "copy", Hash: hash("moat_a"), Role: "admin", CreatedAt: at(0)}), store.ErrConflict)
}

func testInTxRollback(t *testing.T, s store.Store) {
	ctx := t.Context()
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx store.Tx) error {
		if _, err := tx.UpsertProject(ctx, store.Project{ID: "p-1", Name: "support", CreatedAt: at(0), UpdatedAt: at(0)}); err != nil {
			return err
		}
		wf, ver, _ := saveVersion(t, tx, "support", "triage", "h1", "hooks/t", at(0))
		if err := tx.CreateRun(ctx, newRun(wf, ver, "run-1", at(0))); err != nil {
			return err
		}
		if err := tx.CreateToken(ctx, store.Token{ID: "tok-1", Name: "t", Hash: []byte("h"), Role: "admin", CreatedAt: at(0)}); err != nil {
			return err
		}
		// The transaction reads its own writes.
		if _, err := tx.GetRun(ctx, "run-1"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx returned %v, want fn's error", err)
	}

	_, err = s.GetProject(ctx, "support")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetRun(ctx, "run-1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.FindWebhook(ctx, "hooks/t")
	wantErr(t, err, store.ErrNotFound)
	wfs, err := s.ListWorkflows(ctx, "")
	must(t, err)
	n, err := s.CountTokens(ctx)
	must(t, err)
	if len(wfs) != 0 || n != 0 {
		t.Fatalf("after rollback: %d workflows, %d tokens", len(wfs), n)
	}
}

func testInTxCommit(t *testing.T, s store.Store) {
	ctx := t.Context()
	var run store.Run
	err := s.InTx(ctx, func(tx store.Tx) error {
		// River runs its own statements on the same transaction.
		var one int
		if err := tx.SQL().QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			return err
		}
		wf, ver, _ := saveVersion(t, tx, "support", "triage", "h1", "", at(0))
		run = newRun(wf, ver, "run-1", at(0))
		if err := tx.CreateRun(ctx, run); err != nil {
			return err
		}
		run.Status, run.UpdatedAt = store.RunWaiting, at(time.Second)
		if err := tx.UpdateRun(ctx, run); err != nil {
			return err
		}
		if err := tx.UpsertStep(ctx, store.Step{RunID: "run-1", StepID: "review", Uses: "approval", Status: store.StepWaiting, UpdatedAt: at(time.Second)}); err != nil {
			return err
		}
		return tx.CreateTask(ctx, store.Task{ID: "task-1", RunID: "run-1", StepID: "review", ProjectID: wf.ProjectID,
			Status: store.TaskPending, Title: "Review", CreatedAt: at(time.Second)})
	})
	must(t, err)

	// Reads outside the transaction (the read pool) see the commit.
	got, err := s.GetRun(ctx, "run-1")
	must(t, err)
	equal(t, "run", got, run)
	steps, err := s.ListSteps(ctx, "run-1")
	must(t, err)
	tasks, err := s.ListTasks(ctx, store.TaskFilter{RunID: "run-1"})
	must(t, err)
	if len(steps) != 1 || len(tasks) != 1 {
		t.Fatalf("after commit: %d steps, %d tasks; want 1 and 1", len(steps), len(tasks))
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	wf, ver, _ := saveVersion(t, s, "support", "triage", "h1", "", at(0))
	must(t, s.CreateRun(ctx, newRun(wf, ver, "run-1", at(0))))

	tests := []struct {
		name string
		call func() error
	}{
		{"GetProject", func() error { _, err := s.GetProject(ctx, "nope"); return err }},
		{"GetWorkflow of a missing project", func() error { _, err := s.GetWorkflow(ctx, "nope", "triage"); return err }},
		{"GetWorkflow", func() error { _, err := s.GetWorkflow(ctx, "support", "nope"); return err }},
		{"GetWorkflowByID", func() error { _, err := s.GetWorkflowByID(ctx, "nope"); return err }},
		{"GetVersion", func() error { _, err := s.GetVersion(ctx, "nope"); return err }},
		{"GetVersionByNumber", func() error { _, err := s.GetVersionByNumber(ctx, wf.ID, 2); return err }},
		{"FindWebhook", func() error { _, err := s.FindWebhook(ctx, "nope"); return err }},
		{"GetRun", func() error { _, err := s.GetRun(ctx, "nope"); return err }},
		{"UpdateRun", func() error { return s.UpdateRun(ctx, store.Run{ID: "nope", Status: store.RunRunning}) }},
		{"GetStep", func() error { _, err := s.GetStep(ctx, "run-1", "nope"); return err }},
		{"GetTask", func() error { _, err := s.GetTask(ctx, "nope"); return err }},
		{"DecideTask", func() error {
			_, err := s.DecideTask(ctx, "nope", store.TaskApproved, "rita", "", at(0))
			return err
		}},
		{"FindToken", func() error { _, err := s.FindToken(ctx, []byte("nope")); return err }},
		{"TouchToken", func() error { return s.TouchToken(ctx, "nope", at(0)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			wantErr(t, err, store.ErrNotFound)
			if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("%v also matches another sentinel", err)
			}
		})
	}

	// Lists of nothing are empty, not errors.
	runs, next, err := s.ListRuns(ctx, store.RunFilter{WorkflowID: "nope"})
	must(t, err)
	steps, err := s.ListSteps(ctx, "nope")
	must(t, err)
	versions, err := s.ListVersions(ctx, "nope")
	must(t, err)
	attempts, err := s.ListAttempts(ctx, "nope")
	must(t, err)
	if len(runs)+len(steps)+len(versions)+len(attempts) != 0 || next != "" {
		t.Fatal("lists of a missing parent are not empty")
	}
}
