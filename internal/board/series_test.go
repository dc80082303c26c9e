package board

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/router/samples"
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
	pts := []point{{Requests: 0, P95: math.NaN()}, {Requests: 5, P95: 20}, {Requests: 10, P95: 40}}
	s := spark(pts, func(p point) float64 { return p.Requests }, "%.1f/s")
	if s.Points != "0.0,40.0 120.0,20.0 240.0,0.0" || s.Now != "10.0/s" || s.Max != "10.0/s" {
		t.Errorf("requests: %+v", s)
	}
	s = spark(pts, func(p point) float64 { return p.P95 }, "%.0f ms")
	if s.Points != "120.0,20.0 240.0,0.0" || s.Now != "40 ms" {
		t.Errorf("a point without latency is left out: %+v", s)
	}
	s = spark(pts[:1], func(p point) float64 { return p.P95 }, "%.0f ms")
	if s.Points != "" || s.Now != "no response yet" {
		t.Errorf("no latency at all: %+v", s)
	}
}

func TestProxyTarget(t *testing.T) {
	for raw, want := range map[string]string{
		"http://10.0.0.7:9101/samples": "9101 samples",
		"http://[fd00::7]:9101/samples": "9101 samples",
	} {
		port, path, err := proxyTarget(raw)
		if err != nil || port+" "+path != want {
			t.Errorf("%s: %q %q %v, want %s", raw, port, path, err, want)
		}
	}
	for _, raw := range []string{"", "https://10.0.0.7:9101/samples", "http://10.0.0.7/samples", "http://10.0.0.7:99999/samples", "::"} {
		if _, _, err := proxyTarget(raw); err == nil {
			t.Errorf("%q: no error", raw)
		}
	}
}

// TestProxyFetcher: the request client-go sends for a pod's samples, as
// the API server's pod proxy takes it (GET pods/http:{name}:{port}/proxy/{path}).
func TestProxyFetcher(t *testing.T) {
	want := samples.Report{Worker: "42", Servers: []samples.Server{{Backend: "free", Server: "canary", Requests: 7, Errors: 1}}}
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
	if _, err := ProxyFetcher(client)(context.Background(), "shop", "p", "http://10.0.0.7:9101/other"); err == nil ||
		!strings.Contains(err.Error(), "pod shop/p through the API server's proxy") {
		t.Errorf("a refusal: %v", err)
	}
}

// TestPlotsReadOnlyWhatIsWanted: a service is read while a page of it
// asked within plotWanted, then forgotten with its points.
func TestPlotsReadOnlyWhatIsWanted(t *testing.T) {
	p := &plots{services: map[string]*serviceSeries{}}
	t0 := time.Unix(1000, 0)
	if due := p.due(t0); len(due) != 0 {
		t.Fatalf("nothing wanted, due: %v", due)
	}
	p.want("shop/a", t0)
	p.want("shop/b", t0.Add(time.Minute))
	if due := p.due(t0.Add(plotWanted)); strings.Join(due, ",") != "shop/a,shop/b" {
		t.Errorf("due: %v", due)
	}
	if due := p.due(t0.Add(plotWanted + time.Second)); strings.Join(due, ",") != "shop/b" {
		t.Errorf("due after a's pages closed: %v", due)
	}
	if _, ok := p.services["shop/a"]; ok {
		t.Error("a's points are kept")
	}
}
