package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRemoteCommands drives apply, runs and tasks against a server.
func TestRemoteCommands(t *testing.T) {
	_, url, token := serveApp(t)
	t.Setenv("MOAT_SERVER", url)
	t.Setenv("MOAT_TOKEN", token)

	resources := writeFile(t, "demo.yaml", `apiVersion: moat/v1
kind: Project
name: demo
description: the remote commands test
---
apiVersion: moat/v1
kind: Workflow
name: ask
project: demo
steps:
  - {id: ask, uses: approval, with: {title: "Go ahead?", role: reviewer}}
  - {id: done, uses: transform, with: {set: {ok: "steps.ask.output.approved"}}}
---
apiVersion: moat/v1
kind: Workflow
name: sleep
project: demo
steps:
  - {id: nap, uses: wait, with: {duration: 1h}}
`)
	out, errOut, code := moat(t, "apply", "-f", resources)
	want := "project demo applied\nworkflow demo/ask version 1 created\nworkflow demo/sleep version 1 created\n"
	if code != 0 || out != want {
		t.Fatalf("apply: code %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = moat(t, "apply", "-f", resources)
	if !strings.Contains(out, "workflow demo/ask version 1 unchanged") {
		t.Fatalf("second apply: %s", out)
	}

	// Problems name lines of the file, not of the document.
	broken := writeFile(t, "broken.yaml", "kind: Project\nname: demo\n---\napiVersion: moat/v1\nkind: Workflow\nname: bad\nsteps:\n  - {id: a, uses: nope}\n")
	_, errOut, code = moat(t, "apply", "-f", broken)
	if code != 1 || !strings.Contains(errOut, "broken.yaml:8:") || !strings.Contains(errOut, `unknown node type "nope"`) {
		t.Fatalf("broken apply: code %d\n%s", code, errOut)
	}

	runID := regexp.MustCompile(`run_[a-z0-9]+`)
	start := func(name string) string {
		out, errOut, code := moat(t, "runs", "start", name, "--project", "demo", "--input", "{}")
		id := runID.FindString(out)
		if code != 0 || id == "" {
			t.Fatalf("runs start %s: code %d\n%s%s", name, code, out, errOut)
		}
		return id
	}
	asked, slept := start("ask"), start("sleep")
	_, errOut, code = moat(t, "runs", "start", "ask", "--project", "demo", "--input", "[1]")
	if code != 1 || !strings.Contains(errOut, "422") {
		t.Fatalf("start with a bad input: code %d %s", code, errOut)
	}

	out, _, code = moat(t, "tasks", "list", "--project", "demo")
	taskID := regexp.MustCompile(`task_[a-z0-9]+`).FindString(out)
	if code != 0 || taskID == "" || !strings.Contains(out, "Go ahead?") {
		t.Fatalf("tasks list: %s", out)
	}
	out, _, code = moat(t, "tasks", "approve", taskID, "--comment", "fine")
	if code != 0 || !strings.Contains(out, "approved") {
		t.Fatalf("approve: %s", out)
	}
	_, errOut, code = moat(t, "tasks", "reject", taskID)
	if code != 1 || !strings.Contains(errOut, "409") {
		t.Fatalf("second decision: code %d %s", code, errOut)
	}
	out, _, code = moat(t, "runs", "get", asked, "--wait", "10s")
	if code != 0 || !strings.Contains(out, "succeeded") || !strings.Contains(out, `output: {"ok":true}`) {
		t.Fatalf("runs get: %s", out)
	}

	waitFor(t, func() bool {
		out, _, _ := moat(t, "runs", "get", slept, "-o", "json")
		return strings.Contains(out, `"status": "waiting"`)
	})
	out, _, code = moat(t, "runs", "cancel", slept)
	if code != 0 || out != "run "+slept+" cancelled\n" {
		t.Fatalf("cancel: %q", out)
	}
	out, _, code = moat(t, "runs", "list", "--project", "demo")
	if code != 0 || !strings.Contains(out, asked+"  succeeded") || !strings.Contains(out, slept+"  cancelled") {
		t.Fatalf("runs list:\n%s", out)
	}
	out, _, _ = moat(t, "runs", "list", "--project", "demo", "--limit", "1")
	if !strings.Contains(out, "more: --cursor ") {
		t.Fatalf("runs list page: %s", out)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
