package router

import (
	"github.com/prometheus/client_golang/prometheus/testutil"

	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWeightEditAppliesAtRuntime(t *testing.T) {
	h := newHarness(t)
	if got := h.send(100, "FREE"); got["canary"] != 5 || got["production"] != 95 {
		t.Fatalf("before the edit: want canary 5 / production 95 of 100, got %v", got)
	}
	reloads := h.reloads()
	h.writeSpec(h.spec(30, 70))
	h.waitFor("runtime update", func() bool { return h.runtimeUpdates() == 1 })

	got := h.send(1000, "FREE")
	if diff := cmp.Diff(map[string]int{"canary": 300, "production": 700}, got); diff != "" {
		t.Errorf("split after the edit (-want +got):\n%s", diff)
	}
	if h.reloads() != reloads {
		t.Errorf("a weight edit reloaded HAProxy: reloads %v -> %v", reloads, h.reloads())
	}
	if cfg := h.configOnDisk(); !strings.Contains(cfg, "server canary "+h.backends["canary"].Addr+" weight 30 ") {
		t.Errorf("the file on disk does not carry the new weight:\n%s", cfg)
	}
}

func TestStructuralEditReloads(t *testing.T) {
	h := newHarness(t)
	if got := h.send(10, "BETA"); got["paid"]+got["production"] != 10 {
		t.Fatalf("before the edit BETA is not a group: want the default backend, got %v", got)
	}
	reloads := h.reloads()
	spec := strings.Replace(h.spec(5, 95), "  FREE: canary\n", "  FREE: canary\n  BETA: beta\n", 1)
	spec = strings.Replace(spec, "  internal:   {internal: 100}\n", "  internal:   {internal: 100}\n  beta:       {canary: 1}\n", 1)
	h.writeSpec(spec)
	h.waitFor("reload", func() bool { return h.reloads() == reloads+1 })

	if diff := cmp.Diff(map[string]int{"canary": 50}, h.send(50, "beta")); diff != "" {
		t.Errorf("BETA after the edit (-want +got):\n%s", diff)
	}
	if h.runtimeUpdates() != 0 {
		t.Errorf("a structural edit went through the Runtime API")
	}
	h.waitFor("the reload applied, with what changed in the spec", func() bool {
		a := h.router.LastApplied()
		return a.How == "reload" && a.Why == "groups.BETA none->beta, backends.beta: canary none->1 (100.0%)"
	})
}

func TestInvalidEditChangesNothing(t *testing.T) {
	h := newHarness(t)
	before := h.configOnDisk()
	reloads := h.reloads()
	h.writeSpec(h.spec(300, 95))
	h.waitFor("rejection", func() bool { return h.rejected() == 1 })

	if !strings.Contains(h.logs.String(), "service.yaml:15: backends.canary.canary: weight 300 is out of range 0-256") {
		t.Errorf("the log does not name the field and line:\n%s", h.logs.String())
	}
	if got := h.send(100, "FREE"); got["canary"] != 5 || got["production"] != 95 {
		t.Errorf("after a rejected edit: want the old split canary 5 / production 95, got %v", got)
	}
	if h.reloads() != reloads || h.runtimeUpdates() != 0 {
		t.Errorf("a rejected edit touched HAProxy: reloads %v -> %v, runtime updates %v", reloads, h.reloads(), h.runtimeUpdates())
	}
	if h.configOnDisk() != before {
		t.Error("a rejected edit changed the config on disk")
	}
	if !h.router.Ready() {
		t.Error("a rejected edit made the sidecar not ready; the old config still serves")
	}

	// The next valid edit is applied.
	h.writeSpec(h.spec(10, 90))
	h.waitFor("runtime update", func() bool { return h.runtimeUpdates() == 1 })
	if got := h.send(100, "FREE"); got["canary"] != 10 {
		t.Errorf("after a valid edit: want canary 10 of 100, got %v", got)
	}
}

func TestBurstOfEditsCoalesces(t *testing.T) {
	h := newHarness(t)
	reloads := h.reloads()
	// 100 structural edits (a group renamed each time) with the final one known.
	const edits = 100
	for i := 1; i <= edits; i++ {
		spec := strings.Replace(h.spec(i, 100), "  FREE: canary\n", "  FREE: canary\n  G"+strconv.Itoa(i)+": canary\n", 1)
		h.writeSpec(spec)
		time.Sleep(5 * time.Millisecond) // an edit every ~5ms, faster than a reload
	}
	h.waitFor("final state applied", func() bool {
		return strings.Contains(string(h.router.Applied()), "-i G"+strconv.Itoa(edits)+" }")
	})
	got := h.send(200, "G"+strconv.Itoa(edits))
	if diff := cmp.Diff(map[string]int{"canary": 100, "production": 100}, got); diff != "" {
		t.Errorf("final state (-want +got):\n%s", diff)
	}
	if got := h.send(10, "G1"); got["canary"] != 0 {
		t.Errorf("a group of an earlier edit is still routed to canary: %v", got)
	}
	n := h.reloads() - reloads
	t.Logf("%d edits, %v reloads, %v runtime updates", edits, n, h.runtimeUpdates())
	if n > edits/4 {
		t.Errorf("%d edits caused %v reloads: want far fewer", edits, n)
	}
}

func TestStartWithoutValidSpec(t *testing.T) {
	tests := []struct {
		name    string
		initial func(h *harness) string
		log     string
		// A missing file is a read error, not a rejected spec.
		rejected, readErrors float64
	}{
		{"missing file", func(*harness) string { return "" }, "read spec: open", 0, 1},
		{"invalid spec", func(h *harness) string { return h.spec(5, 95) + "extra: 1\n" }, "service.yaml:18: extra: unknown field", 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startHarness(t, tc.initial)
			h.waitFor("rejection or read error", func() bool {
				return h.rejected() == tc.rejected && testutil.ToFloat64(h.router.Metrics.ReadErrors) == tc.readErrors
			})
			if h.router.Ready() {
				t.Error("ready without a valid config")
			}
			if !strings.Contains(h.logs.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, h.logs.String())
			}
			if _, err := os.Stat(h.router.ConfigPath); !os.IsNotExist(err) {
				t.Errorf("a config was written without a valid spec: %v", err)
			}
			h.writeSpec(h.spec(5, 95))
			h.waitFor("ready after a valid edit", h.router.Ready)
			if got := h.send(100, "FREE"); got["canary"] != 5 {
				t.Errorf("after the valid edit: want canary 5 of 100, got %v", got)
			}
		})
	}
}

// TestSpecWarningLogged: a spec trackctl validate warns about (weights that
// do not sum to 100) is applied, and the sidecar says the same warning,
// once; a normal start warns of nothing.
func TestSpecWarningLogged(t *testing.T) {
	h := newHarness(t)
	if strings.Contains(h.logs.String(), "level=WARN") {
		t.Errorf("a normal start warned:\n%s", h.logs.String())
	}
	h.writeSpec(h.spec(50, 95))
	h.waitFor("runtime update", func() bool { return h.runtimeUpdates() == 1 })
	if n := strings.Count(h.logs.String(), "weights sum to 145"); n != 1 {
		t.Errorf("the sum warning logged %d times, want 1:\n%s", n, h.logs.String())
	}
}
