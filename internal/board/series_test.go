package board

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/fleet"
)

func counts(pod, worker string, req, errs int64, ms ...float64) analysis.PodCounts {
	c := analysis.PodCounts{Pod: pod, Worker: worker, Requests: req, Errors: errs, LatencyEpoch: "e1"}
	for _, m := range ms {
		c.Latency.Observe(m)
	}
	return c
}

// TestSeriesRates: a point is what every pod served between two reads,
// per second; the first read starts the count; a restarted HAProxy's
// counters from 0 are no negative rate, and the point says so.
func TestSeriesRates(t *testing.T) {
	var ts trackSeries
	t0 := time.Unix(1000, 0)
	ts.add([]analysis.PodCounts{counts("a", "1", 100, 1), counts("b", "1", 50, 0)}, t0)
	if len(ts.points) != 0 {
		t.Fatalf("the first read made a point: %+v", ts.points)
	}
	ts.add([]analysis.PodCounts{counts("a", "1", 200, 3, 10, 10, 10, 500), counts("b", "1", 100, 0, 10)}, t0.Add(5*time.Second))
	p := ts.points[0]
	if p.Requests != 30 || p.Errors != 0.4 || p.Reset {
		t.Errorf("point: %+v, want 150 requests and 2 errors in 5 s", p)
	}
	if p.P95 < 100 {
		t.Errorf("p95 of four 10 ms and one 500 ms: %v", p.P95)
	}
	// Pod a's HAProxy restarted: a new worker counts from 0.
	ts.add([]analysis.PodCounts{counts("a", "2", 20, 0), counts("b", "1", 110, 0)}, t0.Add(10*time.Second))
	p = ts.points[1]
	if p.Requests != 6 || !p.Reset || !math.IsNaN(p.P95) {
		t.Errorf("after a restart: %+v, want 30 requests in 5 s, a reset, no latency", p)
	}
	for i := 0; i < plotPoints+5; i++ {
		ts.add([]analysis.PodCounts{counts("a", "2", 20, 0), counts("b", "1", 110, 0)}, t0.Add(time.Duration(15+5*i)*time.Second))
	}
	if len(ts.points) != plotPoints {
		t.Errorf("%d points kept, want %d", len(ts.points), plotPoints)
	}
}

func TestSpark(t *testing.T) {
	now := time.Unix(1000, 0)
	span := 10 * time.Second
	pts := []point{{At: now.Add(-10 * time.Second), Requests: 0, P95: math.NaN()}, {At: now.Add(-5 * time.Second), Requests: 5, P95: 20}, {At: now, Requests: 10, P95: 40}}
	s := spark(pts, now, span, func(p point) float64 { return p.Requests }, "%.1f/s")
	if s.Points != "0.0,40.0 120.0,20.0 240.0,0.0" || s.Now != "10.0/s" || s.Max != "10.0/s" {
		t.Errorf("requests: %+v", s)
	}
	s = spark(pts, now, span, func(p point) float64 { return p.P95 }, "%.0f ms")
	if s.Points != "120.0,20.0 240.0,0.0" || s.Now != "40 ms" {
		t.Errorf("a point without latency is left out: %+v", s)
	}
	s = spark(pts[:1], now, span, func(p point) float64 { return p.P95 }, "%.0f ms")
	if s.Points != "" || s.Now != "no response yet" || s.Max != "no response" {
		t.Errorf("no latency at all: %+v", s)
	}
	// Points by time: a gap in the reads is a gap on the axis, and a
	// point older than the span sits at its left edge.
	s = spark([]point{{At: now.Add(-time.Minute), Requests: 1}, {At: now.Add(-2500 * time.Millisecond), Requests: 1}}, now, span, func(p point) float64 { return p.Requests }, "%.1f/s")
	if s.Points != "0.0,0.0 180.0,0.0" {
		t.Errorf("by time: %+v", s)
	}
}

func TestProxyPort(t *testing.T) {
	for raw, want := range map[string]string{
		"http://10.0.0.7:9101/samples":  "9101",
		"http://[fd00::7]:9101/samples": "9101",
	} {
		if port, err := proxyPort(raw); err != nil || port != want {
			t.Errorf("%s: %q %v, want %s", raw, port, err, want)
		}
	}
	for _, raw := range []string{"", "https://10.0.0.7:9101/samples", "http://10.0.0.7/samples", "http://10.0.0.7:99999/samples", "::",
		"http://x:9000/../../../../secrets", "http://x:9000/samples/../../secrets", "http://x:9000/metrics"} {
		if _, err := proxyPort(raw); err == nil {
			t.Errorf("%q: no error", raw)
		}
	}
}

// TestProxyFetcher: the request client-go sends for a pod's samples, as
// the API server's pod proxy takes it (GET pods/http:{name}:{port}/proxy/{path}).
func TestProxyFetcher(t *testing.T) {
	want := contract.SamplesReport{Worker: "42", Servers: []contract.SamplesServer{{Backend: "free", Server: "canary", Requests: 7, Errors: 1}}}
	var got string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Method + " " + r.URL.Path
		if !strings.HasSuffix(r.URL.Path, "/proxy/samples") {
			http.Error(w, `{"kind":"Status","message":"forbidden"}`, http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(want)
	}))
	defer api.Close()
	client := kubernetes.NewForConfigOrDie(&rest.Config{Host: api.URL})
	rep, err := ProxyFetcher(client)(context.Background(), "shop", "account-service-haproxy-x", "http://10.0.0.7:9101/samples")
	if err != nil {
		t.Fatal(err)
	}
	if got != "GET /api/v1/namespaces/shop/pods/http:account-service-haproxy-x:9101/proxy/samples" {
		t.Errorf("request: %s", got)
	}
	if rep.Worker != "42" || len(rep.Servers) != 1 || rep.Servers[0].Requests != 7 {
		t.Errorf("report: %+v", rep)
	}
	if _, err := ProxyFetcher(client)(context.Background(), "shop", "p", "http://10.0.0.7:9101/../../secrets"); err == nil ||
		!strings.Contains(err.Error(), "want http://host:port/samples") {
		t.Errorf("a path out of the pod's proxy: %v", err)
	}
}

// TestDirectFetcher: a report's URL reaches only what a sidecar serves:
// http, the path /samples, no redirect followed, no body of a refusal
// shown.
func TestDirectFetcher(t *testing.T) {
	var hits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits = append(hits, r.URL.Path)
		switch r.URL.Path {
		case "/samples":
			if r.URL.Query().Get("x") != "" {
				http.Redirect(w, r, "/secret", http.StatusFound)
				return
			}
			json.NewEncoder(w).Encode(contract.SamplesReport{Worker: "7"})
		default:
			http.Error(w, "the secret body", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	fetch := DirectFetcher(srv.Client())
	if rep, err := fetch(context.Background(), "shop", "p", srv.URL+"/samples"); err != nil || rep.Worker != "7" {
		t.Fatalf("%+v, %v", rep, err)
	}
	for _, u := range []string{srv.URL + "/secret", srv.URL + "/samples?x=1", strings.Replace(srv.URL, "http:", "file:", 1) + "/samples", srv.URL + "/samples/../secret"} {
		_, err := fetch(context.Background(), "shop", "p", u)
		if err == nil || strings.Contains(err.Error(), "the secret body") {
			t.Errorf("%s: %v", u, err)
		}
	}
	if slices.Contains(hits, "/secret") {
		t.Errorf("requests sent: %v", hits)
	}
}

// TestReadServiceSkipsPartialReads: a read where a pod did not answer
// makes no point (it would dip, and the next would count the pod twice);
// the next full read covers both intervals. No samples URL at all is said.
func TestReadServiceSkipsPartialReads(t *testing.T) {
	h := &fleet.Health{Namespace: "shop", Service: "a", Tracks: []fleet.TrackHealth{{Name: "canary"}}}
	for _, p := range []string{"p1", "p2"} {
		h.HAProxy.Pods = append(h.HAProxy.Pods, fleet.PodState{Name: p, Report: &fleet.Report{Samples: "http://" + p + ":9101/samples"}})
	}
	b := &Board{healths: []*fleet.Health{h}, subs: map[chan event]bool{}}
	var requests atomic.Int64 // per pod, growing 100 a read
	down := atomic.Bool{}
	b.Plot(func(_ context.Context, _, pod, _ string) (*contract.SamplesReport, error) {
		if pod == "p2" && down.Load() {
			return nil, errors.New("timeout")
		}
		n := requests.Add(50)
		return &contract.SamplesReport{Worker: "1", Servers: []contract.SamplesServer{{Backend: "free", Server: "canary", Requests: n}}}, nil
	}, time.Second)
	b.plots.want("shop/a", time.Now())
	read := func() []point {
		b.readService(context.Background(), "shop/a")
		return b.plots.services["shop/a"].tracks["canary"].points
	}
	read()
	if pts := read(); len(pts) != 1 {
		t.Fatalf("points after two reads: %+v", pts)
	}
	down.Store(true)
	if pts := read(); len(pts) != 1 || !strings.Contains(b.plots.services["shop/a"].err, "p2: timeout") {
		t.Fatalf("a partial read made a point, or was not said: %+v %q", pts, b.plots.services["shop/a"].err)
	}
	down.Store(false)
	if pts := read(); len(pts) != 2 || pts[1].Requests <= 0 || pts[1].Reset {
		t.Fatalf("the read after: %+v", pts)
	}

	h.HAProxy.Pods = []fleet.PodState{{Name: "p1"}}
	read()
	if err := b.plots.services["shop/a"].err; !strings.Contains(err, "no HAProxy pod's report names a samples URL") {
		t.Errorf("no samples URL: %q", err)
	}
}
