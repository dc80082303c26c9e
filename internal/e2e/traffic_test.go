package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// traffic sends steady requests to a URL with each group's header in turn,
// from several keep-alive clients (kube-proxy pins each connection to one
// HAProxy pod, so several reach several pods), and counts every answer:
// who served it (the echo's "track=T version=V") and every failure by cause.
type traffic struct {
	url    string
	groups []string // X-Traffic-Group values; "" sends none
	stop   chan struct{}
	wg     sync.WaitGroup
	n      atomic.Int64

	mu     sync.Mutex
	window *tally // since the last take
	total  *tally
	// firstBad is when the first answer of badVersion came (a 500 or not),
	// by group.
	firstBad map[string]time.Time
}

// tally counts answers and failures.
type tally struct {
	start, end time.Time
	sent       int
	served     map[string]map[string]int // group -> "track version" -> answers (2xx)
	failed     map[string]int            // cause -> requests
	badBuild   map[string]int            // group -> 500s the bad build answered
	samples    []string                  // the first failures, for the log
}

func newTally() *tally {
	return &tally{start: time.Now(), served: map[string]map[string]int{}, failed: map[string]int{}, badBuild: map[string]int{}}
}

// startTraffic starts clients workers, each sending a request every
// interval.
func startTraffic(url string, groups []string, clients int, interval time.Duration) *traffic {
	tr := &traffic{url: url, groups: groups, stop: make(chan struct{}), window: newTally(), total: newTally(), firstBad: map[string]time.Time{}}
	for i := 0; i < clients; i++ {
		tr.wg.Add(1)
		go tr.client(interval)
	}
	return tr
}

func (tr *traffic) client(interval time.Duration) {
	defer tr.wg.Done()
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tr.stop:
			return
		case <-tick.C:
		}
		group := tr.groups[int(tr.n.Add(1))%len(tr.groups)]
		tr.record(group, send(client, tr.url, group))
	}
}

// answer is one request's outcome.
type answer struct {
	at     time.Time
	status int
	body   string
	err    error
}

func send(client *http.Client, url, group string) answer {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return answer{at: time.Now(), err: err}
	}
	if group != "" {
		req.Header.Set("X-Traffic-Group", group)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{at: time.Now(), err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return answer{at: time.Now(), status: resp.StatusCode, body: strings.TrimSpace(string(b)), err: err}
}

func (tr *traffic) record(group string, a answer) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if _, ok := tr.firstBad[group]; !ok && strings.Contains(a.body, "version="+badVersion) {
		tr.firstBad[group] = a.at
	}
	for _, t := range []*tally{tr.window, tr.total} {
		t.sent++
		switch {
		case a.err != nil:
			t.fail(a, group, "client: "+errorCause(a.err))
		case a.status == http.StatusOK:
			by := t.served[group]
			if by == nil {
				by = map[string]int{}
				t.served[group] = by
			}
			by[a.body]++
		case a.status == http.StatusInternalServerError && strings.HasPrefix(a.body, "error from ") && strings.Contains(a.body, "version="+badVersion):
			t.badBuild[group]++
		default:
			t.fail(a, group, fmt.Sprintf("status %d", a.status))
		}
	}
}

func (t *tally) fail(a answer, group, cause string) {
	t.failed[cause]++
	if len(t.samples) < 10 {
		what := cause
		if a.err != nil {
			what = a.err.Error()
		} else if a.body != "" {
			what += ": " + a.body
		}
		t.samples = append(t.samples, fmt.Sprintf("%s group %q: %s", a.at.Format("15:04:05.000"), group, what))
	}
}

// errorCause names a client error's kind: what a user would see.
func errorCause(err error) string {
	var ne net.Error
	switch s := err.Error(); {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "connection reset"):
		return "connection reset"
	case strings.Contains(s, "EOF"):
		return "connection closed (EOF)"
	default:
		return "other"
	}
}

// take returns the counts since the last take and starts a new window.
func (tr *traffic) take() *tally {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	w := tr.window
	w.end = time.Now()
	tr.window = newTally()
	return w
}

// Stop stops the clients and returns the counts of the whole run.
func (tr *traffic) Stop() *tally {
	close(tr.stop)
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.total.end = time.Now()
	return tr.total
}

// failures is the number of failed requests (the bad build's own 500s are
// not failures of the product: they are counted apart).
func (t *tally) failures() int {
	n := 0
	for _, c := range t.failed {
		n += c
	}
	return n
}

// share is the share of group's answers served by track (any version), in
// percent, and the number of answers.
func (t *tally) share(group, track string) (float64, int) {
	n, of := 0, 0
	for who, c := range t.served[group] {
		of += c
		if strings.HasPrefix(who, "track="+track+" ") {
			n += c
		}
	}
	if of == 0 {
		return 0, 0
	}
	return 100 * float64(n) / float64(of), of
}

// answeredBy counts, by group, the answers version served.
func (t *tally) answeredBy(version string) map[string]int {
	by := map[string]int{}
	for group, who := range t.served {
		for w, c := range who {
			if strings.HasSuffix(w, " version="+version) {
				by[group] += c
			}
		}
	}
	return by
}

// versions lists who served group: "track=T version=V" with counts.
func (t *tally) versions(group string) string {
	var out []string
	for who, c := range t.served[group] {
		out = append(out, fmt.Sprintf("%s: %d", who, c))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func (t *tally) String() string {
	causes := make([]string, 0, len(t.failed))
	for c, n := range t.failed {
		causes = append(causes, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(causes)
	s := fmt.Sprintf("%d requests in %s (%.0f/s), %d failed", t.sent, t.end.Sub(t.start).Round(100*time.Millisecond),
		float64(t.sent)/t.end.Sub(t.start).Seconds(), t.failures())
	if len(causes) > 0 {
		s += " (" + strings.Join(causes, ", ") + ")"
	}
	bad := 0
	for _, n := range t.badBuild {
		bad += n
	}
	if bad > 0 {
		s += fmt.Sprintf("; %d answered 500 by the bad build %s (by group: %v)", bad, badVersion, t.badBuild)
	}
	return s
}
