package haproxyconf

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/weights"
)

// TestTraffic renders the account-service example with its tracks pointing
// at local backends, runs a real HAProxy on it and checks where requests of
// each group go.
func TestTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 12,000 requests through a real haproxy")
	}
	bin := haproxytest.Binary(t)
	spec := localExample(t)
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

// TestTrustedSourcesTraffic: with trustedSources, a caller from another
// address loses its group header before routing (whatever the case of the
// header's name, however many times it is sent): 0 of 10,000 INTERNAL
// requests reach the internal track; from a trusted address the header
// routes as before. Both routing shapes: ACLs and the groups map.
func TestTrustedSourcesTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 20,000 requests through a real haproxy")
	}
	bin := haproxytest.Binary(t)
	spec := localExample(t)
	spec.TrustAny, spec.TrustedSources = false, []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	spec.Affinity = &weights.Affinity{Cookie: "TRACK"}
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}}
	}
	for _, mapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("groups map %v", mapped), func(t *testing.T) {
			dir := t.TempDir()
			port := haproxytest.FreePort(t)
			opt := Options{Bind: fmt.Sprintf("127.0.0.1:%d", port)}
			if mapped {
				opt.GroupsMap = filepath.Join(dir, "groups.map")
			}
			r, err := Render(spec, opt)
			if err != nil {
				t.Fatal(err)
			}
			if mapped {
				if err := os.WriteFile(opt.GroupsMap, r.Map, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(path, r.Config, 0o600); err != nil {
				t.Fatal(err)
			}
			haproxytest.Start(t, bin, path)
			haproxytest.WaitListening(t, opt.Bind)
			url := "http://" + opt.Bind + "/"

			untrusted := haproxytest.Counter{URL: url, Header: spec.Header, Client: from("127.0.0.1")}
			got, err := untrusted.Send(10000, "INTERNAL")
			if err != nil {
				t.Fatal(err)
			}
			if got["internal"] != 0 || got["paid"]+got["production"] != 10000 {
				t.Errorf("INTERNAL from an untrusted caller: %v, want the default backend (paid) only", got)
			}
			// Odd casing of the name, and the header twice.
			for _, h := range []http.Header{{"x-traffic-group": {"INTERNAL"}}, {"X-TRAFFIC-GROUP": {"INTERNAL", "INTERNAL"}}} {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				for k, v := range h {
					req.Header[k] = v // as written, not canonicalized
				}
				resp, err := untrusted.Client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) == "internal" {
					t.Errorf("headers %v from an untrusted caller reached internal", h)
				}
			}
			trusted := haproxytest.Counter{URL: url, Header: spec.Header, Client: from("127.0.0.2")}
			if got, err := trusted.Send(50, "INTERNAL"); err != nil || got["internal"] != 50 {
				t.Errorf("INTERNAL from a trusted caller: %v, %v; want internal 50", got, err)
			}
			// The affinity cookie naming the canary (paid, 5% of the
			// default backend) pins a trusted caller, not an untrusted one.
			pinned := func(c *http.Client) int {
				n := 0
				for i := 0; i < 400; i++ {
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					req.Header.Set("Cookie", "session=1; TRACK=paid")
					resp, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(body) == "paid" {
						n++
					}
				}
				return n
			}
			if n := pinned(untrusted.Client); n > 60 {
				t.Errorf("an untrusted caller with the cookie TRACK=paid reached paid %d times of 400, want about 5%%", n)
			}
			if n := pinned(trusted.Client); n != 400 {
				t.Errorf("a trusted caller with the cookie TRACK=paid reached paid %d times of 400, want every time", n)
			}
		})
	}
}

// BenchmarkTrustedSourcesCost is what the source check costs: HAProxy on
// the example with and without trustedSources (8 ranges, the caller in the
// last), side by side in one run, 5 alternating rounds of 3 s, 16
// keep-alive clients on loopback.
//
//	go test ./haproxyconf -run '^$' -bench TrustedSourcesCost -benchtime 1x
func BenchmarkTrustedSourcesCost(b *testing.B) {
	bin := haproxytest.Binary(b)
	spec := localExample(b)
	var ranges []netip.Prefix
	for i := 0; i < 7; i++ {
		ranges = append(ranges, netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", i)))
	}
	ranges = append(ranges, netip.MustParsePrefix("127.0.0.0/8"))
	for i := 0; i < b.N; i++ {
		rate, cpu := map[bool][]float64{}, map[bool][]float64{}
		for round := 0; round < 5; round++ {
			for _, check := range []bool{false, true} {
				s := *spec
				s.TrustAny, s.TrustedSources = !check, nil
				if check {
					s.TrustedSources = ranges
				}
				port := haproxytest.FreePort(b)
				r, err := Render(&s, Options{Bind: fmt.Sprintf("127.0.0.1:%d", port)})
				if err != nil {
					b.Fatal(err)
				}
				path := filepath.Join(b.TempDir(), "haproxy.cfg")
				if err := os.WriteFile(path, r.Config, 0o600); err != nil {
					b.Fatal(err)
				}
				p := haproxytest.Start(b, bin, path)
				addr := fmt.Sprintf("127.0.0.1:%d", port)
				haproxytest.WaitListening(b, addr)
				n := haproxytest.Load("http://"+addr+"/", 16, 3*time.Second)
				rate[check] = append(rate[check], float64(n)/3)
				p.Stop()
				cpu[check] = append(cpu[check], float64(p.CPU().Microseconds())/float64(max(n, 1)))
			}
		}
		without, with := haproxytest.Median(rate[false]), haproxytest.Median(rate[true])
		cw, cc := haproxytest.Median(cpu[false]), haproxytest.Median(cpu[true])
		b.ReportMetric(100*(without-with)/without, "%-fewer")
		b.ReportMetric(cc-cw, "cpu-us/req-added")
		fmt.Printf("trustedSources cost: HAProxy CPU per request, median %.1f µs without, %.1f µs with (%+.1f%%)\n", cw, cc, 100*(cc-cw)/cw)
		fmt.Printf("trustedSources cost: median %.0f requests/s without, %.0f with (%.1f%% fewer); rounds without %v, with %v\n", without, with, 100*(without-with)/without, haproxytest.Rounded(rate[false]), haproxytest.Rounded(rate[true]))
	}
}

// localExample is the account-service example with each track answering
// on a local echo backend (its body names the track), stopped at cleanup.
func localExample(tb testing.TB) *weights.Spec {
	tb.Helper()
	spec := readSpec(tb, "../examples/account-service/account-service.yaml")
	backends := haproxytest.StartBackends(tb, spec.TrackNames()...)
	for name, tr := range spec.Tracks {
		tr.Address = backends[name].Addr
		spec.Tracks[name] = tr
	}
	return spec
}
