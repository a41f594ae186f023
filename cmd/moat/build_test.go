package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// moatBuild is the binary the tests run, and what linking it showed.
type moatBuild struct {
	bin string
	// methodLookups are the linker's dependency lines that first reach a
	// function making it keep every exported method (see
	// TestLinkerDropsUnusedMethods).
	methodLookups []string
}

// buildMoat compiles the binary once per test process. It links with
// -dumpdep, which prints the linker's dependency graph and changes nothing
// in the binary, so that the check of that graph needs no link of its own.
var buildMoat = sync.OnceValues(func() (moatBuild, error) {
	dir, err := os.MkdirTemp("", "moat-bin-")
	if err != nil {
		return moatBuild{}, err
	}
	b := moatBuild{bin: filepath.Join(dir, "moat")}
	cmd := exec.Command("go", "build", "-ldflags=-dumpdep", "-o", b.bin, ".")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return moatBuild{}, err
	}
	if err := cmd.Start(); err != nil {
		return moatBuild{}, err
	}
	// Each dependency line is "from -> to", with "<ReflectMethod>" after a
	// function that makes the linker keep all methods; any other line is
	// the compiler's or the linker's message.
	var messages []string
	lines := bufio.NewScanner(stderr)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		_, to, isDependency := strings.Cut(lines.Text(), " -> ")
		switch {
		case !isDependency:
			messages = append(messages, lines.Text())
		case strings.HasSuffix(to, "<ReflectMethod>"):
			b.methodLookups = append(b.methodLookups, lines.Text())
		}
	}
	if err := errors.Join(lines.Err(), cmd.Wait()); err != nil {
		return moatBuild{}, fmt.Errorf("go build: %v\n%s", err, strings.Join(messages, "\n"))
	}
	return b, nil
})
