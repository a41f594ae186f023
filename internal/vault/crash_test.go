package vault

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatproject/moat/internal/store/sqlite"
)

// crashDirEnv tells the test binary, run again as a child, to rewrap the
// vault in that directory and stop for ever in the middle of a batch.
const crashDirEnv = "MOAT_VAULT_CRASH_DIR"

const crashSecrets, crashBatch = 40, 10

// TestRewrapSurvivesKill rotates the key, starts a rewrap in a child
// process, kills it with SIGKILL inside a transaction (after two batches
// committed, halfway through the third), and checks that nothing was lost
// and that a second rewrap finishes the job.
func TestRewrapSurvivesKill(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as the child")
	}
	t.Parallel()
	e := newEnv(t)
	for i := range crashSecrets {
		set(t, e.v, "prod", fmt.Sprintf("S%02d", i), fmt.Sprintf("crash-value-%02d", i), bound("c"))
	}
	if _, err := e.v.RotateKey(t.Context()); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestRewrapCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+e.dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	ready := false
	for lines.Scan() {
		if lines.Text() == "mid-batch" {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Wait()
		t.Fatalf("the child never reached the middle of a batch; stderr:\n%s", stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// Reopen the files as a restarted server would.
	s, err := sqlite.Open(t.Context(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v := e.open(t, func(c *Config) { c.Store = s })
	check := func() map[uint32]int {
		for i := range crashSecrets {
			if got := resolve(t, v, access("prod", "c", ""), "prod", fmt.Sprintf("S%02d", i)); got != fmt.Sprintf("crash-value-%02d", i) {
				t.Fatalf("S%02d resolved %q", i, got)
			}
		}
		counts, err := s.CountSecretsByTerm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return counts
	}
	if counts := check(); counts[2] != 2*crashBatch || counts[1] != crashSecrets-2*crashBatch {
		t.Fatalf("after the kill: %v, want the two committed batches at term 2", counts)
	}
	res, err := v.Rewrap(t.Context(), RewrapOptions{BatchSize: crashBatch})
	if err != nil || res.Rewrapped != crashSecrets-2*crashBatch {
		t.Fatalf("resumed rewrap: %+v %v", res, err)
	}
	if counts := check(); counts[2] != crashSecrets {
		t.Fatalf("after resuming: %v", counts)
	}
	if err := v.SetMinDecryptionTerm(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
}

// TestRewrapCrashChild is the child of TestRewrapSurvivesKill.
func TestRewrapCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestRewrapSurvivesKill")
	}
	s, err := sqlite.Open(context.Background(), filepath.Join(dir, "moat.db"))
	if err != nil {
		t.Fatal(err)
	}
	fs := &faultStore{Store: s, onRewrap: func(call int) error {
		if call == 2*crashBatch+crashBatch/2 {
			fmt.Println("mid-batch")
			select {} // wait for SIGKILL
		}
		return nil
	}}
	v, err := Open(context.Background(), Config{Store: fs, Source: KeyFile{Path: filepath.Join(dir, KeyFileName)}, Hook: &memHook{}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Rewrap(context.Background(), RewrapOptions{BatchSize: crashBatch})
	t.Fatalf("the rewrap finished (%v) instead of waiting to be killed", err)
}
