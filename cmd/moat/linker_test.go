package main

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
)

// TestLinkerDropsUnusedMethods guards the size of the binary, and with it
// idle memory: once a function that looks a method up by a name known only
// at run time (text/template's field evaluation, reflect.Value.MethodByName
// with a variable) is reachable, the linker must keep every exported method
// of every type the binary holds. With the AI vendors' SDKs, whose every API
// type has its own JSON methods, that was 34 MB more binary and 12 MB more
// idle RSS (BENCHMARKS.md, "Idle memory").
func TestLinkerDropsUnusedMethods(t *testing.T) {
	if testing.Short() {
		t.Skip("links the whole binary")
	}
	t.Parallel()
	cmd := exec.Command("go", "build", "-ldflags=-dumpdep", "-o", t.TempDir()+"/moat", ".")
	deps, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Each line is "from -> to", with "<ReflectMethod>" after a function
	// that makes the linker keep all methods; the line that first reaches
	// one names it.
	var culprits []string
	lines := bufio.NewScanner(deps)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		if _, to, ok := strings.Cut(lines.Text(), " -> "); ok && strings.HasSuffix(to, "<ReflectMethod>") {
			culprits = append(culprits, lines.Text())
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	if len(culprits) > 0 {
		t.Errorf("the binary reaches a method lookup by run-time name, so the linker keeps every exported method; reached through:\n%s", strings.Join(culprits, "\n"))
	}
}
