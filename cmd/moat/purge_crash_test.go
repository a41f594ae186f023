package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/client"
	"github.com/moatproject/moat/internal/store"
	"github.com/moatproject/moat/internal/store/sqlite"
	"github.com/moatproject/moat/internal/vault"
)

type nopAccessHook struct{}

func (nopAccessHook) SecretAccessed(context.Context, vault.Event) error { return nil }

// TestPurgeSurvivesKill kills the server with SIGKILL in the middle of a
// purge and checks, on the files it left, that no payload kind is half
// erased: a kind marked purged has lost its key, and a kind whose key is
// alive still opens. After a restart the purge finishes.
func TestPurgeSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server; skipped with -short")
	}
	build, err := buildMoat()
	if err != nil {
		t.Fatal(err)
	}
	bin := build.bin
	dataDir := t.TempDir()
	addr := freeAddr(t)
	logs := &syncBuffer{}
	env := []string{"MOAT_RETENTION=1s", "MOAT_PURGE_INTERVAL=1h"}
	srv := startServer(t, bin, dataDir, addr, logs, env...)
	defer func() { srv.cmd.Process.Kill(); srv.cmd.Wait() }()
	token, err := os.ReadFile(filepath.Join(dataDir, "bootstrap.token"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New("http://"+addr, strings.TrimSpace(string(token)))
	ctx := context.Background()
	definition := `
apiVersion: moat/v1
kind: Workflow
name: note
steps:
  - {id: echo, uses: transform, with: {set: {seen: "input.email"}}}
`
	if _, err := c.Do(ctx, http.MethodPost, "/api/v1/workflows", nil, map[string]any{"source": definition}, nil); err != nil {
		t.Fatal(err)
	}
	const runs = 200
	ids := make([]string, 0, runs)
	for i := range runs {
		var run struct{ ID, Status string }
		if _, err := c.Do(ctx, http.MethodPost, "/api/v1/projects/default/workflows/note/runs", nil,
			map[string]any{"input": map[string]any{"email": fmt.Sprintf("user%d@example.com", i)}}, &run); err != nil || run.Status != "succeeded" {
			t.Fatalf("run %d: %+v, %v", i, run, err)
		}
		ids = append(ids, run.ID)
	}
	time.Sleep(1100 * time.Millisecond) // every run's retention has run out

	// Kill while the purge runs; wait longer each time it had not begun.
	var destroyed int
	for delay := 20 * time.Millisecond; ; delay *= 2 {
		go c.Do(ctx, http.MethodPost, "/api/v1/runs/purge", nil, nil, nil)
		time.Sleep(delay)
		if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		srv.cmd.Wait()
		destroyed = checkNothingHalfErased(t, dataDir, ids)
		t.Logf("killed %v into the purge: %d of %d payload kinds destroyed", delay, destroyed, runs*len(store.PayloadKinds))
		if destroyed > 0 || delay > 5*time.Second {
			break
		}
		srv = startServer(t, bin, dataDir, addr, logs, env...)
	}
	if destroyed == 0 || destroyed == runs*len(store.PayloadKinds) {
		t.Logf("the kill did not land inside the purge; the check above still holds")
	}

	srv = startServer(t, bin, dataDir, addr, logs, env...)
	var res struct{ Purged int }
	if _, err := c.Do(ctx, http.MethodPost, "/api/v1/runs/purge", nil, nil, &res); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		var run struct {
			Input  any               `json:"input"`
			Purged map[string]string `json:"purged"`
		}
		if _, err := c.Do(ctx, http.MethodGet, "/api/v1/runs/"+id, nil, nil, &run); err != nil {
			t.Fatal(err)
		}
		if run.Input != nil || len(run.Purged) != len(store.PayloadKinds) {
			t.Fatalf("run %s after the resumed purge: input %v, purged %v", id, run.Input, run.Purged)
		}
	}
	if strings.Contains(logs.String(), "@example.com") {
		t.Fatal("an address reached the server's log")
	}
}

// checkNothingHalfErased opens the files a killed server left and checks
// every run's payload kinds; it returns how many kinds lost their keys.
func checkNothingHalfErased(t *testing.T, dataDir string, ids []string) int {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := sqlite.OpenRunKeys(ctx, filepath.Join(dataDir, "run-keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	v, err := vault.Open(ctx, vault.Config{Store: st, Hook: nopAccessHook{}, Source: vault.KeyFile{Path: filepath.Join(dataDir, vault.KeyFileName)}})
	if err != nil {
		t.Fatal(err)
	}
	cipher := v.PayloadKeys(keys, vault.PayloadKeysOptions{CacheTTL: -1})
	destroyed := 0
	for _, id := range ids {
		purges, err := st.PayloadPurges(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var sealedInput []byte
		if err := st.WriterDB().QueryRowContext(ctx, `SELECT input FROM runs WHERE id = ?`, id).Scan(&sealedInput); err != nil {
			t.Fatal(err)
		}
		for _, kind := range store.PayloadKinds {
			k, err := keys.GetRunKey(ctx, id, kind)
			if err != nil {
				t.Fatalf("run %s: %s key: %v", id, kind, err)
			}
			_, marked := purges[kind]
			switch {
			case k.Wrapped == nil:
				destroyed++
			case marked:
				t.Fatalf("run %s: %s is marked purged but its key is alive", id, kind)
			case kind == store.PayloadInput:
				plain, err := cipher.Open(ctx, store.PayloadField{RunID: id, Kind: kind, Name: "input"}, sealedInput)
				if err != nil || !strings.Contains(string(plain), "@example.com") {
					t.Fatalf("run %s: the input's key is alive but it does not open: %q, %v", id, plain, err)
				}
			}
		}
	}
	return destroyed
}
