package haproxyconf

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

// TestTraffic renders the account-service example with its tracks pointing
// at local backends, runs a real HAProxy on it and checks where requests of
// each group go.
func TestTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 12,000 requests through a real haproxy")
	}
	bin := haproxytest.Binary(t)
	spec := readSpec(t, "../examples/account-service/account-service.yaml")
	backends := haproxytest.StartBackends(t, spec.TrackNames()...)
	for name, tr := range spec.Tracks {
		tr.Address = backends[name].Addr
		spec.Tracks[name] = tr
	}
	port := haproxytest.FreePort(t)
	r, err := Render(spec, Options{Bind: fmt.Sprintf("127.0.0.1:%d", port)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	haproxytest.Start(t, bin, path)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	haproxytest.WaitListening(t, addr)
	client := haproxytest.Counter{URL: "http://" + addr + "/", Header: spec.Header}

	t.Run("routes", func(t *testing.T) {
		tests := []struct {
			group string
			want  map[string]int
		}{
			{"INTERNAL", map[string]int{"internal": 50}},
			{"internal", map[string]int{"internal": 50}}, // case-insensitive
			{"ENTERPRISE", map[string]int{"production": 50}},
			{"Enterprise", map[string]int{"production": 50}},
		}
		for _, tc := range tests {
			got, err := client.Send(50, tc.group)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("group %q (-want +got):\n%s", tc.group, diff)
			}
		}
	})

	t.Run("split", func(t *testing.T) {
		tests := []struct {
			group         string
			canary, other string
		}{
			{"FREE", "canary", "production"},
			{"", "paid", "production"},                // no header: the default backend
			{"GOLD", "paid", "production"},            // unknown group: the default backend
			{"FREE,ENTERPRISE", "paid", "production"}, // not a listed value as a whole
		}
		const n = 4000
		for _, tc := range tests {
			got, err := client.Send(n, tc.group)
			if err != nil {
				t.Fatal(err)
			}
			if got[tc.canary]+got[tc.other] != n {
				t.Fatalf("group %q: want only %s and %s, got %v", tc.group, tc.canary, tc.other, got)
			}
			share := 100 * float64(got[tc.canary]) / n
			if math.Abs(share-5) > 1 {
				t.Errorf("group %q: %s got %.2f%% of %d requests, want 5%% +/- 1 point", tc.group, tc.canary, share, n)
			}
			t.Logf("group %q: %s %.2f%% (%d of %d)", tc.group, tc.canary, share, got[tc.canary], n)
		}
	})
}
