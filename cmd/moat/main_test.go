package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// moat runs the CLI in-process and returns stdout, stderr and the exit code.
func moat(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return moatWithStdin(t, "", args...)
}

// moatWithStdin is moat with stdin.
func moatWithStdin(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	code := 0
	var ee exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case err != nil:
		stderr.WriteString(err.Error())
		code = 1
	}
	return stdout.String(), stderr.String(), code
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateExamples(t *testing.T) {
	t.Parallel()
	out, errOut, code := moat(t, "validate", "../../examples")
	if code != 0 || strings.Count(out, "is valid") != 4 {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
}

func TestValidateReportsProblemsWithFileLines(t *testing.T) {
	t.Parallel()
	// The workflow is the second document: lines count from the file's top.
	path := writeFile(t, "bad.yaml", `apiVersion: moat/v1
kind: Project
name: demo
---
apiVersion: moat/v1
kind: Workflow
name: bad
steps:
  - id: a
    uses: transform
    with: {set: {x: "input.("}}
  - id: b
    uses: teleport
`)
	_, errOut, code := moat(t, "validate", path)
	if code != 1 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	for _, want := range []string{path + ":11:", path + ":13:", "teleport"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestRunPrintsTheFinishedRun(t *testing.T) {
	t.Parallel()
	out, errOut, code := moat(t, "run", "../../examples/order-totals.yaml", "--input", "@../../examples/inputs/order-totals.json")
	if code != 0 {
		t.Fatalf("code %d\n%s", code, errOut)
	}
	// The temporary data dir is gone when the run ends, and with it the
	// vault's key file: no warning about keeping that file safe.
	if errOut != "" {
		t.Errorf("a successful run wrote to stderr:\n%s", errOut)
	}
	var run struct {
		Status string
		Output map[string]any
	}
	if err := json.Unmarshal([]byte(out), &run); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if run.Status != "succeeded" || run.Output["largest"] != 274.8 || run.Output["lines"] != float64(3) {
		t.Fatalf("run %+v", run)
	}
}

func TestRunExitsNonZeroWhenTheRunFails(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "fails.yaml", `apiVersion: moat/v1
kind: Workflow
name: fails
steps:
  - {id: a, uses: transform, with: {set: {x: "1 / 0"}}}
`)
	out, errOut, code := moat(t, "run", path)
	if code != 1 || !strings.Contains(out, `"status": "failed"`) {
		t.Fatalf("code %d\n%s\n%s", code, out, errOut)
	}
}

func TestRunRefusesInputThatFailsTheSchema(t *testing.T) {
	t.Parallel()
	_, errOut, code := moat(t, "run", "../../examples/order-totals.yaml", "--input", `{"lines": []}`)
	if code != 1 || !strings.Contains(errOut, "taxRate") {
		t.Fatalf("code %d\n%s", code, errOut)
	}
	_, errOut, code = moat(t, "run", "../../examples/order-totals.yaml", "--input", `{"lines": [`)
	if code != 1 || !strings.Contains(errOut, "--input") {
		t.Fatalf("code %d\n%s", code, errOut)
	}
}

func TestSchemaWorkflowIsJSONSchema(t *testing.T) {
	t.Parallel()
	out, _, code := moat(t, "schema", "workflow")
	var schema map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &schema) != nil {
		t.Fatalf("code %d\n%s", code, out)
	}
	for _, want := range []string{"2020-12", "http.request", "approval", "foreach"} {
		if !strings.Contains(out, want) {
			t.Errorf("schema lacks %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, code := moat(t, "version")
	if code != 0 || !strings.HasPrefix(out, "moat ") {
		t.Fatalf("code %d: %q", code, out)
	}
}

func TestRemoteCommandsNeedAToken(t *testing.T) {
	t.Setenv("MOAT_TOKEN", "")
	_, errOut, code := moat(t, "runs", "list", "--token-file", filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.Contains(errOut, "MOAT_TOKEN") {
		t.Fatalf("code %d: %s", code, errOut)
	}
}
