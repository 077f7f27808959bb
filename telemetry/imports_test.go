package telemetry_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLibraryImportsNoSDK: the library's packages (all but the CLI) depend
// on the OpenTelemetry API only; the SDK and the exporters are for
// `keyward serve` and for the host.
func TestLibraryImportsNoSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Deps " "}}`, "github.com/keyward/keyward/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p, deps, _ := strings.Cut(line, "|")
		if strings.HasPrefix(p, "github.com/keyward/keyward/cmd/") {
			continue
		}
		checked++
		for _, d := range strings.Fields(deps) {
			if strings.HasPrefix(d, "go.opentelemetry.io/otel/sdk") || strings.HasPrefix(d, "go.opentelemetry.io/otel/exporters") ||
				strings.HasPrefix(d, "github.com/prometheus/") {
				t.Errorf("%s imports %s: the library may use the OpenTelemetry API only", p, d)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked %d packages; go list found too few", checked)
	}
}
