package main

import (
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
	build, err := buildMoat()
	if err != nil {
		t.Fatal(err)
	}
	if len(build.methodLookups) > 0 {
		t.Errorf("the binary reaches a method lookup by run-time name, so the linker keeps every exported method; reached through:\n%s", strings.Join(build.methodLookups, "\n"))
	}
}
