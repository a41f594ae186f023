package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/client"
)

// effectLedger is a receiver that applies each idempotency key once, as a
// payment API would, and remembers every key per run and step.
type effectLedger struct {
	mu      sync.Mutex
	applied map[string]int            // key -> requests seen
	byStep  map[string]map[string]int // run/step -> key -> requests
}

func newLedger() *effectLedger {
	return &effectLedger{applied: map[string]int{}, byStep: map[string]map[string]int{}}
}

func (l *effectLedger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	var body struct {
		Run string `json:"run"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	step := body.Run + "/" + strings.TrimPrefix(r.URL.Path, "/")
	l.mu.Lock()
	l.applied[key]++
	if l.byStep[step] == nil {
		l.byStep[step] = map[string]int{}
	}
	l.byStep[step][key]++
	l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintln(w, `{"ok":true}`)
}

func (l *effectLedger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.applied)
}

type server struct {
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
}

// syncBuffer collects a process's output; exec copies into it from its own
// goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer starts moat serve; env adds MOAT_* settings to its
// environment.
func startServer(t *testing.T, bin, dataDir, addr string, logs *syncBuffer, env ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--addr", addr, "--data-dir", dataDir, "--allow-private-egress", "--log-format", "json")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, addr: addr, logs: logs}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	t.Fatalf("server did not become ready:\n%s", logs)
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestCrashLosesNothingAndRepeatsNothing starts 200 runs of a workflow with
// an effect, a wait and another effect, kills the server with SIGKILL while
// they are in flight, restarts it and checks that every accepted run
// completes with each effect applied exactly once. It does so twice.
func TestCrashLosesNothingAndRepeatsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server; skipped with -short")
	}
	build, err := buildMoat()
	if err != nil {
		t.Fatal(err)
	}
	bin := build.bin
	ledger := newLedger()
	receiver := httptest.NewServer(ledger)
	defer receiver.Close()

	dataDir := t.TempDir()
	addr := freeAddr(t)
	// Every server's output, across the kills, to check for the canary.
	logs := &syncBuffer{}
	srv := startServer(t, bin, dataDir, addr, logs)
	defer func() { srv.cmd.Process.Kill(); srv.cmd.Wait() }()
	token, err := os.ReadFile(filepath.Join(dataDir, "bootstrap.token"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New("http://"+addr, strings.TrimSpace(string(token)))
	ctx := context.Background()

	definition := fmt.Sprintf(`
apiVersion: moat/v1
kind: Workflow
name: crashy
steps:
  - id: charge
    uses: http.request
    with: {method: POST, url: "%[1]s/charge", body: {run: "{{ run.id }}"}}
  - id: settle
    uses: wait
    with: {duration: 400ms}
  - id: notify
    uses: http.request
    with: {method: POST, url: "%[1]s/notify", body: {run: "{{ run.id }}"}}
`, receiver.URL)
	if _, err := c.Do(ctx, http.MethodPost, "/api/v1/workflows", nil, map[string]any{"source": definition}, nil); err != nil {
		t.Fatal(err)
	}

	// Runs are started while the server is being killed: only answers of
	// 202 count as accepted; a start cut off by the kill is tried again.
	const runs = 200
	var mu sync.Mutex
	var accepted []string
	posted := make(chan struct{})
	go func() {
		defer close(posted)
		for tries := 0; tries < 20*runs; tries++ {
			mu.Lock()
			n := len(accepted)
			mu.Unlock()
			if n == runs {
				return
			}
			var run struct{ ID string }
			status, err := c.Do(ctx, http.MethodPost, "/api/v1/projects/default/workflows/crashy/runs", nil, map[string]any{"input": map[string]any{"card": payloadCanary}}, &run)
			if err != nil || status != http.StatusAccepted {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			mu.Lock()
			accepted = append(accepted, run.ID)
			mu.Unlock()
		}
	}()

	// Kill twice: first while runs are still being started, then after the
	// restart once most effects have happened.
	for _, threshold := range []int{runs / 3, 3 * runs / 2} {
		deadline := time.Now().Add(60 * time.Second)
		for ledger.count() < threshold && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		srv.cmd.Wait()
		mu.Lock()
		t.Logf("killed the server after %d effects, with %d runs accepted", ledger.count(), len(accepted))
		mu.Unlock()
		srv = startServer(t, bin, dataDir, addr, logs)
	}
	<-posted
	if len(accepted) != runs {
		t.Fatalf("only %d runs were accepted", len(accepted))
	}

	deadline := time.Now().Add(90 * time.Second)
	var remaining int
	for time.Now().Before(deadline) {
		remaining = 0
		for _, id := range accepted {
			var run struct{ Status string }
			if _, err := c.Do(ctx, http.MethodGet, "/api/v1/runs/"+id, nil, nil, &run); err != nil {
				t.Fatalf("run %s accepted before the crash is gone: %v", id, err)
			}
			if run.Status != "succeeded" {
				if run.Status == "failed" || run.Status == "cancelled" {
					t.Fatalf("run %s ended %s", id, run.Status)
				}
				remaining++
			}
		}
		if remaining == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if remaining > 0 {
		t.Fatalf("%d runs did not complete after restart\n%s", remaining, srv.logs)
	}

	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	for _, id := range accepted {
		for _, step := range []string{"charge", "notify"} {
			if len(ledger.byStep[id+"/"+step]) == 0 {
				t.Errorf("run %s: %s never happened", id, step)
			}
		}
	}
	if extra := len(ledger.byStep) - 2*runs; extra > 0 {
		t.Logf("%d effects belong to runs whose start answer the kill cut off (committed, so they ran too)", extra)
	}
	repeats := 0
	for step, keys := range ledger.byStep {
		if len(keys) != 1 {
			t.Errorf("%s applied under %d different keys: %v", step, len(keys), keys)
		}
		for _, n := range keys {
			repeats += n - 1
		}
	}
	t.Logf("%d requests were repeats of an interrupted attempt with the same key (the receiver dropped them)", repeats)
	if strings.Contains(logs.String(), payloadCanary) {
		t.Error("a run's input appeared in the server's log")
	}
}

// payloadCanary is planted in every run's input; logs must never show it.
const payloadCanary = "4111-1111-CANARY-7c1e"
