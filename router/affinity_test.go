package router

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

// affinityHarness is the sidecar harness with affinity added to the spec
// (the FREE group: canary c / production p).
func affinityHarness(t testing.TB, affinity string, c, p int) *harness {
	t.Helper()
	h := startHarness(t, func(h *harness) string { return withAffinity(h.spec(c, p), affinity) },
		func(h *harness) { h.router.Render.MetricsBind = fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t)) })
	h.waitFor("first config applied", func() bool { return h.router.Ready() })
	haproxytest.WaitListening(t, h.addr)
	return h
}

func withAffinity(spec, affinity string) string {
	return strings.Replace(spec, "default: paid\n", "default: paid\naffinity: "+affinity+"\n", 1)
}

// setCanary edits the FREE backend's weights and waits until HAProxy runs
// them, by the Runtime API: no reload.
func (h *harness) setCanary(affinity string, c, p int) {
	h.t.Helper()
	reloads := h.reloads()
	h.writeSpec(withAffinity(h.spec(c, p), affinity))
	h.waitFor(fmt.Sprintf("canary %d live", c), func() bool {
		obs, err := h.cli.Observe(h.t.Context(), "")
		return err == nil && obs.Weights[haproxyconf.ServerKey{Backend: "canary", Server: "canary"}] == c && h.router.Ready()
	})
	if h.reloads() != reloads {
		h.t.Fatalf("a weight edit reloaded HAProxy")
	}
}

// user is one client: an id header, or a cookie jar.
type user struct {
	id     string
	client *http.Client
}

// tracksSeen sends n requests per user in the FREE group and returns, per
// user, the tracks that answered.
func tracksSeen(t testing.TB, h *harness, users []user, n int) []map[string]int {
	t.Helper()
	out := make([]map[string]int, len(users))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 16)
	for i, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			seen := map[string]int{}
			for j := 0; j < n; j++ {
				req, _ := http.NewRequest(http.MethodGet, "http://"+h.addr+"/", nil)
				req.Header.Set("X-Traffic-Group", "FREE")
				if u.id != "" {
					req.Header.Set("X-User-Id", u.id)
				}
				resp, err := u.client.Do(req)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					mu.Lock()
					firstErr = fmt.Errorf("status %d: %s", resp.StatusCode, body)
					mu.Unlock()
					return
				}
				seen[string(body)]++
			}
			out[i] = seen
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("request failed: %v", firstErr)
	}
	return out
}

// assigned returns each user's one track, failing if a user saw two.
func assigned(t testing.TB, seen []map[string]int) []string {
	t.Helper()
	tracks := make([]string, len(seen))
	split := 0
	for i, s := range seen {
		if len(s) != 1 {
			split++
			continue
		}
		for track := range s {
			tracks[i] = track
		}
	}
	if split > 0 {
		t.Errorf("%d users saw more than one track", split)
	}
	return tracks
}

func share(tracks []string, track string) float64 {
	n := 0
	for _, tr := range tracks {
		if tr == track {
			n++
		}
	}
	return 100 * float64(n) / float64(len(tracks))
}

func within(t testing.TB, what string, got, want, tol float64) {
	t.Helper()
	if got < want-tol || got > want+tol {
		t.Errorf("%s: %.2f%% of users, want %.1f%% +/- %.1f", what, got, want, tol)
	}
}

// TestHeaderAffinity: 2,000 users x 5 requests through FREE at canary 5 /
// production 95; every user sees one track; the canary has 5% +/- 1.5 of
// the users; a runtime edit to 10/90 moves no canary user to production
// and gives the canary 10% +/- 1.5; at canary 0 no request reaches it.
func TestHeaderAffinity(t *testing.T) {
	const aff = "{header: X-User-Id}"
	h := affinityHarness(t, aff, 5, 95)
	users := make([]user, 2000)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range users {
		users[i] = user{id: fmt.Sprintf("user-%d", i), client: client}
	}
	before := assigned(t, tracksSeen(t, h, users, 5))
	within(t, "canary at 5", share(before, "canary"), 5, 1.5)

	h.setCanary(aff, 10, 90)
	after := assigned(t, tracksSeen(t, h, users, 5))
	within(t, "canary at 10", share(after, "canary"), 10, 1.5)
	moved := 0
	for i := range users {
		if before[i] == "canary" && after[i] != "canary" {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d canary users moved to production when the canary's weight went up", moved)
	}

	h.setCanary(aff, 0, 100)
	canary := h.backends["canary"].Hits()
	for _, s := range tracksSeen(t, h, users, 1) {
		if s["canary"] > 0 {
			t.Fatalf("a request reached the canary at weight 0")
		}
	}
	if h.backends["canary"].Hits() != canary {
		t.Errorf("the canary backend got requests at weight 0")
	}
}

// TestCookieAffinity: 1,000 users with a cookie jar each: every user sees
// one track, production users keep production; a runtime edit to 10/90
// keeps every returning user on their track; rollback to 0 moves every
// canary cookie holder on the next request with no error, and they stay
// where they land.
func TestCookieAffinity(t *testing.T) {
	const aff = "{cookie: TRACK, maxAge: 3600}"
	h := affinityHarness(t, aff, 5, 95)
	users := make([]user, 1000)
	for i := range users {
		jar, _ := cookiejar.New(nil)
		users[i] = user{client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	}
	before := assigned(t, tracksSeen(t, h, users, 5))
	within(t, "canary at 5", share(before, "canary"), 5, 1.5)

	h.setCanary(aff, 10, 90)
	after := assigned(t, tracksSeen(t, h, users, 3))
	for i := range users {
		if before[i] != after[i] {
			t.Fatalf("user %d moved from %s to %s on a weight change", i, before[i], after[i])
		}
	}
	// New users are assigned at the new weights.
	fresh := make([]user, 1000)
	for i := range fresh {
		jar, _ := cookiejar.New(nil)
		fresh[i] = user{client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	}
	within(t, "new users at canary 10", share(assigned(t, tracksSeen(t, h, fresh, 2)), "canary"), 10, 2.5)

	// Rollback: every cookie holder moves on the next request.
	h.setCanary(aff, 0, 100)
	canaryHits := h.backends["canary"].Hits()
	rolled := tracksSeen(t, h, users, 1)
	if h.backends["canary"].Hits() != canaryHits {
		t.Errorf("the canary got %d requests at weight 0", h.backends["canary"].Hits()-canaryHits)
	}
	for i, s := range rolled {
		if s["canary"] > 0 {
			t.Fatalf("user %d (was %s) still reached the canary", i, before[i])
		}
	}
	// Back at 10: the moved users carry a production cookie and stay.
	h.setCanary(aff, 10, 90)
	again := assigned(t, tracksSeen(t, h, users, 2))
	for i := range users {
		if again[i] != "production" {
			t.Fatalf("user %d is on %s after the rollback, want production (its new cookie)", i, again[i])
		}
	}
}

// TestHAProxyExporter: the exporter answers on its own port with
// per-server counters that move when traffic reaches that track.
func TestHAProxyExporter(t *testing.T) {
	h := affinityHarness(t, "{header: X-User-Id}", 50, 50)
	scrape := func() string {
		resp, err := http.Get("http://" + h.router.Render.MetricsBind + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	line := func(metrics, prefix string) string {
		for _, l := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		return ""
	}
	const canary = `haproxy_server_http_responses_total{proxy="canary",server="canary",code="2xx"}`
	m0 := scrape()
	for _, name := range []string{canary, `haproxy_server_response_time_average_seconds{proxy="canary",server="canary"}`} {
		if line(m0, name) == "" {
			t.Fatalf("no %s in the exporter's answer (the README's queries use it)", name)
		}
	}
	users := make([]user, 100)
	for i := range users {
		users[i] = user{id: fmt.Sprintf("u%d", i), client: http.DefaultClient}
	}
	tracksSeen(t, h, users, 2)
	if a, b := line(m0, canary), line(scrape(), canary); a == b {
		t.Errorf("the canary's counter did not move: %s", b)
	}
	if resp, err := http.Get("http://" + h.addr + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "haproxy_server") {
			t.Errorf("the exporter answers on the service port")
		}
	}
}

// BenchmarkAffinity: requests per second through HAProxy (FREE group,
// canary 5 / production 95, 8 clients with keep-alive) without affinity,
// with header affinity and with cookie affinity, in one run.
// Run: go test ./router -run '^$' -bench Affinity -benchtime 20000x
func BenchmarkAffinity(b *testing.B) {
	for _, tc := range []struct{ name, affinity string }{{"none", ""}, {"header", "{header: X-User-Id}"}, {"cookie", "{cookie: TRACK}"}} {
		b.Run(tc.name, func(b *testing.B) {
			var h *harness
			if tc.affinity == "" {
				h = newHarness(b)
			} else {
				h = affinityHarness(b, tc.affinity, 5, 95)
			}
			users := make([]user, 8)
			for i := range users {
				jar, _ := cookiejar.New(nil)
				users[i] = user{id: fmt.Sprintf("u%d", i), client: &http.Client{Jar: jar, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}}
			}
			b.ResetTimer()
			start := time.Now()
			tracksSeen(b, h, users, b.N/len(users))
			b.ReportMetric(float64(b.N/len(users)*len(users))/time.Since(start).Seconds(), "req/s")
		})
	}
}
