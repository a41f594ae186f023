package engine_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/engine"
	"github.com/moatproject/moat/internal/retention"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/pgtest"
	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

const fiveSteps = `
apiVersion: moat/v1
kind: Workflow
name: five
input:
  schema: {type: object, properties: {n: {type: integer}}}
steps:
  - {id: a, uses: transform, with: {set: {v: "input.n + 1"}}}
  - {id: b, uses: transform, with: {set: {v: "steps.a.output.v * 2"}}}
  - {id: c, uses: switch, with: {cases: [{when: "steps.b.output.v > 10", next: d}], default: e}}
  - {id: d, uses: transform, with: {set: {v: "steps.b.output.v - 10"}}}
  - {id: e, uses: transform, needs: [d], with: {set: {v: "steps.b.output.v", label: "'done'"}}}
`

// benchRuns starts b.N runs of a five-step workflow without external calls
// from 8 goroutines and waits until every one has succeeded; runs/s counts
// from the first start to the last completion.
func benchRuns(b *testing.B, st store.Store, definition string) {
	b.Helper()
	h := startHarness(b, st)
	saved, err := h.eng.SaveWorkflow(context.Background(), "bench.yaml", []byte(definition))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	ids := make(chan string, b.N)
	var wg sync.WaitGroup
	per := (b.N + 7) / 8
	for g := 0; g < 8; g++ {
		n := min(per, b.N-g*per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				run, err := h.eng.StartRun(ctx, engine.StartRequest{WorkflowID: saved.Workflow.ID, Input: map[string]any{"n": int64(i)}})
				if err != nil {
					b.Error(err)
					return
				}
				ids <- run.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		run, _, err := h.eng.WaitFor(waitCtx, id, nil)
		cancel()
		if err != nil || run.Status != store.RunSucceeded {
			b.Fatalf("run %s: %s %v", id, run.Status, err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "runs/s")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkFiveStepRunsSQLite(b *testing.B) {
	st, err := sqlite.Open(context.Background(), b.TempDir()+"/moat.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() }) // after the engine stops
	benchRuns(b, st, fiveSteps)
}

func BenchmarkFiveStepRunsPostgres(b *testing.B) {
	benchRuns(b, pgtest.Open(b), fiveSteps)
}

// BenchmarkEffectRunsSQLite is a three-step run whose middle step is an
// http.request to a local server: one River job per run, with its attempt
// recorded before and after the call.
func BenchmarkEffectRunsSQLite(b *testing.B) {
	st, err := sqlite.Open(context.Background(), b.TempDir()+"/moat.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	b.Cleanup(srv.Close)
	benchRuns(b, st, fmt.Sprintf(`
apiVersion: moat/v1
kind: Workflow
name: effect
input:
  schema: {type: object, properties: {n: {type: integer}}}
steps:
  - {id: a, uses: transform, with: {set: {v: "input.n + 1"}}}
  - {id: call, uses: http.request, with: {method: POST, url: "%s/x", body: {v: "{{ steps.a.output.v }}"}}}
  - {id: c, uses: transform, with: {set: {ok: "steps.call.output.body.ok"}}}
`, srv.URL))
}

// BenchmarkFiveStepRunsSQLiteSealed is BenchmarkFiveStepRunsSQLite with
// every payload sealed as moat serve seals it: a key per run and payload
// kind, made on the run's first write into a keys file of its own, and
// each payload scanned for subjects to index.
func BenchmarkFiveStepRunsSQLiteSealed(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	st, err := sqlite.Open(ctx, dir+"/moat.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	keys, err := sqlite.OpenRunKeys(ctx, dir+"/run-keys.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { keys.Close() })
	v, err := vault.Open(ctx, vault.Config{Store: st, Hook: nopHook{}, Source: vault.KeyFile{Path: dir + "/" + vault.KeyFileName, Create: true}})
	if err != nil {
		b.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte("bench"))
	var mu sync.Mutex
	digest := func(s string) []byte {
		mu.Lock()
		defer mu.Unlock()
		mac.Reset()
		mac.Write([]byte(s))
		return mac.Sum(nil)
	}
	st.SetPayloadSealer(&retention.Sealer{Cipher: v.PayloadKeys(keys, vault.PayloadKeysOptions{}), Digest: digest})
	benchRuns(b, st, fiveSteps)
}

type nopHook struct{}

func (nopHook) SecretAccessed(context.Context, vault.Event) error { return nil }
