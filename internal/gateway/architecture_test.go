package gateway

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyTheGatewayReachesConnectors: every AI call must pass the gateway's
// pipeline, so no package outside internal/gateway (and the connectors
// themselves) may import a connector package, in code or in tests.
func TestOnlyTheGatewayReachesConnectors(t *testing.T) {
	const module = "github.com/moatproject/moat/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := func(pkg string) bool {
		return strings.HasPrefix(pkg, module+"internal/gateway") || strings.HasPrefix(pkg, module+"internal/connectors")
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := fields[0]
		checked++
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, module+"internal/connectors") && !allowed(pkg) {
				t.Errorf("%s imports %s: only the gateway may call connectors", pkg, imp)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("go list named only %d packages; the check saw too little", checked)
	}
}
