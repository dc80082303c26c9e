package router

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestGroupEditsWithMapApplyAtRuntime routes groups through a map file: a
// group edit (even together with a weight edit) goes through the Runtime
// API, no reload, and the map on disk follows.
func TestGroupEditsWithMapApplyAtRuntime(t *testing.T) {
	h := newMapHarness(t)
	if got := h.send(100, "free"); got["canary"] != 5 || got["production"] != 95 {
		t.Fatalf("before the edit: want FREE canary 5 / production 95, got %v", got)
	}
	if got := h.send(10, "Enterprise"); got["production"] != 10 {
		t.Fatalf("before the edit: want ENTERPRISE on production, got %v", got)
	}
	reloads := h.reloads()

	spec := strings.Replace(h.spec(50, 50), "  FREE: canary\n  ENTERPRISE: enterprise\n", "  FREE: internal\n  BETA: canary\n", 1)
	h.writeSpec(spec)
	h.waitFor("runtime update", func() bool { return h.runtimeUpdates() == 1 })

	if h.reloads() != reloads {
		t.Errorf("a group edit reloaded HAProxy in map mode: reloads %v -> %v", reloads, h.reloads())
	}
	for _, tc := range []struct {
		group string
		want  map[string]int
	}{
		{"FREE", map[string]int{"internal": 20}},                    // moved
		{"beta", map[string]int{"canary": 10, "production": 10}},    // added, with the new weights
		{"ENTERPRISE", map[string]int{"paid": 1, "production": 19}}, // removed: the default backend
	} {
		if diff := cmp.Diff(tc.want, h.send(20, tc.group)); diff != "" {
			t.Errorf("group %s (-want +got):\n%s", tc.group, diff)
		}
	}
	onDisk, err := os.ReadFile(h.router.Render.GroupsMap)
	if err != nil {
		t.Fatal(err)
	}
	if want := "beta canary\nfree internal\ninternal internal\n"; string(onDisk) != want {
		t.Errorf("map on disk: got %q, want %q", onDisk, want)
	}
	h.waitFor("the apply saying which groups changed", func() bool {
		return strings.Contains(h.router.LastApplied().Why, "groups beta none->canary, free canary->internal, enterprise enterprise->none")
	})

	// A structural edit still reloads, and the map stays consistent.
	spec = strings.Replace(spec, "  internal:   {internal: 100}\n", "  internal:   {internal: 100}\n  gold:       {paid: 1}\n", 1)
	spec = strings.Replace(spec, "  BETA: canary\n", "  BETA: canary\n  GOLD: gold\n", 1)
	h.writeSpec(spec)
	h.waitFor("reload", func() bool { return h.reloads() == reloads+1 })
	if diff := cmp.Diff(map[string]int{"paid": 10}, h.send(10, "gold")); diff != "" {
		t.Errorf("group GOLD after the reload (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"internal": 10}, h.send(10, "free")); diff != "" {
		t.Errorf("group FREE after the reload (-want +got):\n%s", diff)
	}
}
