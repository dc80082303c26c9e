package contract

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/trackrouter/trackrouter/"

// TestEachProgramLinksOnlyItsOwn: through the contract, no program links
// another's code: the sidecar links no pipeline, no health judgement and
// no controller; the controller no HAProxy client and no sidecar; trackctl
// neither of them; and the contract none of the three.
func TestEachProgramLinksOnlyItsOwn(t *testing.T) {
	for pkg, forbidden := range map[string][]string{
		"cmd/trackrouter":      {"internal/pipeline", "internal/fleet", "internal/release", "internal/board", "controller", "trackctl"},
		"cmd/track-controller": {"router", "router/haproxy", "router/samples", "router/source", "router/report", "trackctl"},
		"cmd/trackctl":         {"router", "router/haproxy", "router/samples", "controller"},
		"internal/contract":    {"router", "router/haproxy", "router/samples", "controller", "trackctl", "internal/pipeline", "internal/fleet", "internal/board"},
	} {
		out, err := exec.Command("go", "list", "-deps", "../../"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[strings.TrimPrefix(d, module)] = true
		}
		if !deps["internal/contract"] && pkg != "internal/contract" {
			t.Errorf("%s does not import the contract", pkg)
		}
		for _, f := range forbidden {
			if deps[f] {
				t.Errorf("%s links %s", pkg, f)
			}
		}
	}
}
