package board

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/pipeline"
)

// A Fetcher reads one HAProxy pod's measurements (router/samples), which
// its sidecar serves at the URL its report names.
type Fetcher func(ctx context.Context, namespace, pod, url string) (*contract.SamplesReport, error)

// DirectFetcher reads the URL the report names: for a board that runs in
// the cluster (track-controller's), where pod addresses answer. A report
// is written by a sidecar, so the URL is held to what a sidecar serves
// (http, the path /samples) and redirects are not followed; a refusal is
// its status only (contract.FetchSamples).
func DirectFetcher(client *http.Client) Fetcher {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return func(ctx context.Context, _, _, raw string) (*contract.SamplesReport, error) {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.Path != contract.SamplesPath || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("samples URL %q: want http://host:port%s", raw, contract.SamplesPath)
		}
		return contract.FetchSamples(ctx, &c, u.String())
	}
}

// maxReport bounds what a sidecar's answer may cost the board through the
// proxy (contract.FetchSamples bounds it alike).
const maxReport = 4 << 20

// ProxyFetcher reads it through the API server's pod proxy (GET
// pods/proxy), on the caller's credentials: for trackctl board, which runs
// outside the cluster. Only the port comes from the report; the path is
// always /samples (a report is written by a sidecar: it must not choose
// what the caller's credentials read).
func ProxyFetcher(client kubernetes.Interface) Fetcher {
	return func(ctx context.Context, ns, pod, u string) (*contract.SamplesReport, error) {
		port, err := proxyPort(u)
		if err != nil {
			return nil, err
		}
		rc, err := client.CoreV1().Pods(ns).ProxyGet("http", pod, port, strings.TrimPrefix(contract.SamplesPath, "/"), nil).Stream(ctx)
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s through the API server's proxy: %w", ns, pod, err)
		}
		defer rc.Close()
		body, err := io.ReadAll(io.LimitReader(rc, maxReport))
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s through the API server's proxy: %w", ns, pod, err)
		}
		return contract.DecodeSamples(body)
	}
}

// proxyPort is the port of a sidecar's samples URL.
func proxyPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Port() == "" || u.Path != contract.SamplesPath {
		return "", fmt.Errorf("samples URL %q: want http://host:port%s", raw, contract.SamplesPath)
	}
	if _, err := strconv.ParseUint(u.Port(), 10, 16); err != nil {
		return "", fmt.Errorf("samples URL %q: port: %v", raw, err)
	}
	return u.Port(), nil
}

// Plot settings: a point every interval (Plot's argument), the last
// plotPoints kept (5 minutes at 5 s); a service is read while one of its
// pages asked within plotWanted.
const (
	plotPoints = 60
	plotWanted = 2 * time.Minute
)

// point is what a track served between two reads of every HAProxy pod.
type point struct {
	At       time.Time
	Requests float64 // per second
	Errors   float64 // 5xx and failed connections per second
	P95      float64 // ms; NaN without a response
	Reset    bool    // a pod's HAProxy restarted in between: counts may be short
}

// trackSeries is one track's points, from a Tally of every pod's counters.
type trackSeries struct {
	tally  analysis.Tally
	last   analysis.Sample
	lastAt time.Time
	read   bool
	points []point
}

// serviceSeries is a service's tracks, read while a page wants them.
type serviceSeries struct {
	wanted time.Time
	tracks map[string]*trackSeries
	pods   int    // pods read at the last point
	err    string // the last read's failures, in words
}

// plots keeps the series of the services whose pages are open.
type plots struct {
	fetch Fetcher
	every time.Duration

	mu       sync.Mutex
	services map[string]*serviceSeries // by namespace/service
}

// Plot makes the board read every HAProxy pod of each service whose page
// is open, every interval, with fetch, and plot each track's requests/s,
// errors/s and p95 latency on that page. Without it the page has no plot.
// Reads are per service, not per viewer: any number of open pages of a
// service cost one read of each of its pods per interval; none when no
// page of it is open. Call before Start.
func (b *Board) Plot(fetch Fetcher, every time.Duration) {
	b.plots = &plots{fetch: fetch, every: every, services: map[string]*serviceSeries{}}
}

// want marks a service's plots as wanted by a page.
func (p *plots) want(key string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.services[key]
	if s == nil {
		s = &serviceSeries{tracks: map[string]*trackSeries{}}
		p.services[key] = s
	}
	s.wanted = now
}

// run reads the wanted services every interval until ctx ends, and tells
// their pages.
func (b *Board) runPlots(ctx context.Context) {
	tick := time.NewTicker(b.plots.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			// Every service at once (each read is bounded by its
			// timeout): one slow service delays no other's point.
			var wg sync.WaitGroup
			for _, key := range b.plots.due(now) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					b.readService(ctx, key)
					b.tell("samples", key)
				}()
			}
			wg.Wait()
		}
	}
}

// due is the services a page wanted recently; the others are forgotten.
func (p *plots) due(now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var keys []string
	for key, s := range p.services {
		if now.Sub(s.wanted) > plotWanted {
			delete(p.services, key)
			continue
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

// readService reads every pod of the service that names a samples URL,
// at once, and adds a point to each of its tracks.
func (b *Board) readService(ctx context.Context, key string) {
	h := b.health(key)
	if h == nil {
		return
	}
	type read struct {
		pod, url string
		rep      *contract.SamplesReport
		err      error
	}
	var reads []read
	for _, p := range h.HAProxy.Pods {
		if p.Report != nil && p.Report.Samples != "" {
			reads = append(reads, read{pod: p.Name, url: p.Report.Samples})
		}
	}
	var wg sync.WaitGroup
	for i := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			reads[i].rep, reads[i].err = b.plots.fetch(rctx, h.Namespace, reads[i].pod, reads[i].url)
		}()
	}
	wg.Wait()
	now := time.Now() // the counts' time: after every read answered

	counts := map[string][]analysis.PodCounts{} // by track
	var failed []string
	ok := 0
	for _, r := range reads {
		if r.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.pod, r.err))
			continue
		}
		ok++
		for _, t := range h.Tracks {
			counts[t.Name] = append(counts[t.Name], trackCounts(r.pod, r.rep, t.Name))
		}
	}
	p := b.plots
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.services[key]
	if s == nil {
		return
	}
	s.pods, s.err = ok, strings.Join(failed, "; ")
	switch {
	case len(reads) == 0:
		s.err = "no HAProxy pod's report names a samples URL (a sidecar serves one with --metrics-addr)"
		return
	case len(failed) > 0:
		// A point without a pod's counts would dip, and the next one
		// would count them twice: no point, and the next covers both.
		return
	}
	for name := range s.tracks {
		if !slices.ContainsFunc(h.Tracks, func(t fleet.TrackHealth) bool { return t.Name == name }) {
			delete(s.tracks, name) // a track gone from the spec
		}
	}
	for _, t := range h.Tracks {
		ts := s.tracks[t.Name]
		if ts == nil {
			ts = &trackSeries{}
			s.tracks[t.Name] = ts
		}
		ts.add(counts[t.Name], now)
	}
}

// trackCounts sums a pod's counts of the track's servers in every backend.
func trackCounts(pod string, rep *contract.SamplesReport, track string) analysis.PodCounts {
	out := analysis.PodCounts{Pod: pod, Worker: rep.Worker, LatencyEpoch: rep.LatencyEpoch}
	for _, s := range rep.Servers {
		if s.Server == track {
			out.Requests += s.Requests
			out.Errors += s.Errors
			out.Latency.Add(&s.Latency)
		}
	}
	return out
}

// add takes one read of every pod and adds the point since the last read;
// the first read is the start, no point.
func (ts *trackSeries) add(now []analysis.PodCounts, at time.Time) {
	cur := ts.tally.Observe(now)
	last, lastAt, read := ts.last, ts.lastAt, ts.read
	ts.last, ts.lastAt, ts.read = cur, at, true
	if !read {
		return
	}
	secs := at.Sub(lastAt).Seconds()
	if secs <= 0 {
		return
	}
	var lat analysis.Histogram
	for i := range lat {
		lat[i] = cur.Latency[i] - last.Latency[i]
	}
	ts.points = append(ts.points, point{At: at,
		Requests: float64(cur.Requests-last.Requests) / secs,
		Errors:   float64(cur.Errors-last.Errors) / secs,
		P95:      lat.Quantile(0.95),
		Reset:    cur.Reset,
	})
	if n := len(ts.points); n > plotPoints {
		ts.points = slices.Delete(ts.points, 0, n-plotPoints)
	}
}

// Plot is what a service page shows of one track.
type Plot struct {
	Track                 string
	Requests, Errors, P95 Spark
	Points                int
	Resets                int // points where a pod's HAProxy had restarted
}

// Spark is one small time series as SVG points, with its words.
type Spark struct {
	Points string // "x,y x,y ...", in a 0..sparkW × 0..sparkH box
	Now    string // the last value in words
	Max    string // the top of the scale in words
	// Span is the time the x axis covers, in words ("5 min"); Marks are
	// where the release moved in it.
	Span  string
	Marks []Mark
}

// Mark is a release's decision on a plot's time axis.
type Mark struct {
	X     float64 // 0..sparkW
	Label string  // "12:01:02 rollback 1.2 on canary"
}

// marksOf places the release's decisions of the last span on the axis.
func marksOf(r *pipeline.Status, now time.Time, span time.Duration) []Mark {
	if r == nil {
		return nil
	}
	var out []Mark
	for _, d := range r.Decisions {
		age := now.Sub(d.At)
		if age < 0 || age > span {
			continue
		}
		out = append(out, Mark{X: math.Round(10*sparkW*(1-float64(age)/float64(span))) / 10,
			Label: fmt.Sprintf("%s %s %s on %s", d.At.UTC().Format("15:04:05"), d.Kind, d.Version, d.Stage)})
	}
	return out
}

// spanWords is a plot's span in words.
func spanWords(span time.Duration) string {
	if span%time.Minute == 0 {
		return fmt.Sprintf("%d min", span/time.Minute)
	}
	return span.String()
}

const sparkW, sparkH = 240, 40

// plotsOf is the plots of a service's tracks, in the spec's order, and
// what the last read could not read; nil when the board does not plot.
func (b *Board) plotsOf(key string, tracks []fleet.TrackHealth, release *pipeline.Status) ([]Plot, string, bool) {
	p := b.plots
	if p == nil {
		return nil, "", false
	}
	now := time.Now()
	p.want(key, now)
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.services[key]
	var out []Plot
	for _, t := range tracks {
		pl := Plot{Track: t.Name}
		if ts := s.tracks[t.Name]; ts != nil {
			pl.Points = len(ts.points)
			for _, pt := range ts.points {
				if pt.Reset {
					pl.Resets++
				}
			}
			span := p.every * plotPoints
			pl.Requests = spark(ts.points, now, span, func(p point) float64 { return p.Requests }, "%.1f/s")
			pl.Errors = spark(ts.points, now, span, func(p point) float64 { return p.Errors }, "%.1f/s")
			pl.P95 = spark(ts.points, now, span, func(p point) float64 { return p.P95 }, "%.0f ms")
			marks := marksOf(release, now, span)
			for _, sp := range []*Spark{&pl.Requests, &pl.Errors, &pl.P95} {
				sp.Span, sp.Marks = spanWords(span), marks
			}
		}
		out = append(out, pl)
	}
	return out, s.err, true
}

// spark draws the points' values on a scale from 0 to their largest,
// at their time in the span that ends now (a gap in the reads is a gap in
// the line); a point without a value (no response: no latency) is left
// out.
func spark(points []point, now time.Time, span time.Duration, value func(point) float64, format string) Spark {
	top, seen := 0.0, false
	for _, p := range points {
		if v := value(p); !math.IsNaN(v) {
			top, seen = max(top, v), true
		}
	}
	var sb strings.Builder
	for _, p := range points {
		v := value(p)
		if math.IsNaN(v) {
			continue
		}
		age := min(max(now.Sub(p.At), 0), span)
		x := sparkW * (1 - float64(age)/float64(span))
		y := float64(sparkH)
		if top > 0 {
			y = sparkH - v/top*sparkH
		}
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%.1f,%.1f", x, y)
	}
	s := Spark{Points: sb.String(), Max: fmt.Sprintf(format, top), Now: "no response yet"}
	if !seen {
		s.Max = "no response"
	}
	if n := len(points); n > 0 {
		if v := value(points[n-1]); !math.IsNaN(v) {
			s.Now = fmt.Sprintf(format, v)
		}
	}
	return s
}
