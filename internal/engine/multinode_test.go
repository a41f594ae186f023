package engine_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/pgtest"
	"github.com/moatproject/moat/internal/store/postgres"
)

// TestTwoNodesSharePostgres runs two engines, as two servers would, on one
// Postgres database: runs started on either complete, with every effect
// applied under one key, whichever node worked its jobs.
func TestTwoNodesSharePostgres(t *testing.T) {
	t.Parallel()
	url := pgtest.IsolatedURL(t, pgtest.URL(t))
	node := func() *harness {
		st, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return startHarness(t, st)
	}
	a, b := node(), node()

	counter := newKeyCounter()
	srv := httptest.NewServer(counter)
	defer srv.Close()
	saved := a.save(fmt.Sprintf(`
apiVersion: moat/v1
kind: Workflow
name: shared
steps:
  - {id: first, uses: http.request, with: {method: POST, url: "%[1]s/first"}}
  - {id: pause, uses: wait, with: {duration: 50ms}}
  - {id: second, uses: http.request, with: {method: POST, url: "%[1]s/second"}}
`, srv.URL))
	const runs = 40
	var ids []string
	for i := range runs {
		h := a
		if i%2 == 1 {
			h = b
		}
		ids = append(ids, h.start(saved, nil).ID)
	}
	for i, id := range ids {
		h := a
		if i%3 == 0 {
			h = b // either node sees every run
		}
		if run, _ := h.wait(id, nil); run.Status != store.RunSucceeded {
			t.Fatalf("run %s: %s %s", id, run.Status, run.Error)
		}
	}
	keys := counter.keys()
	if len(keys) != 2*runs {
		t.Fatalf("%d keys applied, want %d", len(keys), 2*runs)
	}
	for key, n := range keys {
		if n != 1 || !strings.HasSuffix(key, ".1") {
			t.Errorf("key %s applied %d times", key, n)
		}
	}
	var workers int
	if err := a.store.WriterDB().QueryRowContext(context.Background(),
		`SELECT count(DISTINCT attempted_by[array_length(attempted_by, 1)]) FROM river_job WHERE kind = $1`, engine.StepArgs{}.Kind()).Scan(&workers); err != nil {
		t.Fatal(err)
	}
	t.Logf("jobs were worked by %d nodes", workers)
}
