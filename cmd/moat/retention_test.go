package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moatproject/moat/internal/config"
)

// TestRunsEraseAndPurge drives retention end to end: payloads sealed on
// disk, a subject's runs erased, the rest purged once they expire.
func TestRunsEraseAndPurge(t *testing.T) {
	a, url, token := serveApp(t, func(c *config.Config) { c.Retention, c.PurgeInterval = "1s", "1h" })
	dataDir := a.Config.DataDir
	t.Setenv("MOAT_SERVER", url)
	t.Setenv("MOAT_TOKEN", token)

	wf := writeFile(t, "greet.yaml", `apiVersion: moat/v1
kind: Workflow
name: greet
project: crm
input:
  schema:
    type: object
    properties:
      email: {type: string, x-data-class: pii.email}
steps:
  - {id: hello, uses: transform, with: {set: {greeting: '"Dear " + input.email'}}}
`)
	if out, errOut, code := moat(t, "apply", "-f", wf); code != 0 {
		t.Fatalf("apply: %s %s", out, errOut)
	}
	runID := regexp.MustCompile(`run_[a-z0-9]+`)
	start := func(email string) string {
		out, errOut, code := moat(t, "runs", "start", "greet", "--project", "crm", "--wait", "10s", "--input", `{"email":"`+email+`"}`)
		id := runID.FindString(out)
		if code != 0 || id == "" || !strings.Contains(out, "succeeded") {
			t.Fatalf("start: code %d\n%s\n%s", code, out, errOut)
		}
		return id
	}
	jane, john := start("Jane.Roe@example.com"), start("john.poe@example.com")

	// On disk the payloads are sealed: neither the database nor its WAL
	// holds an address in clear.
	for _, name := range []string{"moat.db", "moat.db-wal", "run-keys.db", "run-keys.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dataDir, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, v := range []string{"Jane.Roe@example.com", "john.poe@example.com"} {
			if bytes.Contains(b, []byte(v)) {
				t.Fatalf("%s holds %s in clear", name, v)
			}
		}
	}
	if out, _, _ := moat(t, "runs", "get", jane, "-o", "json"); !strings.Contains(out, "Jane.Roe@example.com") {
		t.Fatalf("the run does not read back through the API:\n%s", out)
	}

	out, errOut, code := moatWithStdin(t, "nobody@example.com\n", "runs", "erase")
	if code == 0 || !strings.Contains(errOut, "no run holds this identifier") {
		t.Fatalf("erasing an unknown subject: code %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = moatWithStdin(t, " jane.roe@EXAMPLE.com\n", "runs", "erase")
	if code != 0 || !strings.Contains(out, "erased "+jane) || strings.Contains(out, john) || !strings.Contains(out, "1 runs erased") {
		t.Fatalf("erase: code %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = moat(t, "runs", "get", jane, "-o", "json")
	if strings.Contains(out, "Jane.Roe") || !strings.Contains(out, `"purged"`) {
		t.Fatalf("the erased run still shows its payloads, or not that they are purged:\n%s", out)
	}

	// john's run expires a second after it finished.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, errOut, code = moat(t, "runs", "purge")
		if code != 0 {
			t.Fatalf("purge: %s %s", out, errOut)
		}
		if strings.Contains(out, "3 payloads purged from 1 runs") {
			break
		}
		if !strings.Contains(out, "0 payloads purged") || time.Now().After(deadline) {
			t.Fatalf("purge: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, _, _ := moat(t, "runs", "get", john, "-o", "json"); strings.Contains(out, "john.poe") {
		t.Fatalf("the purged run still shows its input:\n%s", out)
	}
}
