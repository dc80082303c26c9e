package samples

import (
	"context"
	"fmt"

	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/router/haproxy"
	"github.com/trackrouter/trackrouter/weights"
)

// TestSamplesFromHAProxy runs HAProxy on a rendered spec with the latency
// log, sends requests to a slow canary that fails every 5th and a fast
// production, and reads a Report as the controller would: exact counts
// per track, the canary's latencies around its 40 ms, production's under
// it, every line read, and after a reload a new worker with the
// latencies kept and the log still read; by either transport of the log.
func TestSamplesFromHAProxy(t *testing.T) {
	t.Run("datagram", func(t *testing.T) { samplesFromHAProxy(t, false) })
	t.Run("pipe", func(t *testing.T) { samplesFromHAProxy(t, true) })
}

func samplesFromHAProxy(t *testing.T, pipe bool) {
	serve := func(delay time.Duration, failEvery int64) string {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(delay)
			if failEvery > 0 && n.Add(1)%failEvery == 0 {
				w.WriteHeader(http.StatusInternalServerError)
			}
		}))
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	canary, production := serve(40*time.Millisecond, 5), serve(0, 0)
	dir := t.TempDir()
	port := haproxytest.FreePort(t)
	spec := fmt.Sprintf(`service: s
port: %d
tracks:
  canary: {version: "2", address: "%s"}
  production: {version: "1", address: "%s"}
groups: {}
default: main
backends:
  main: {canary: 50, production: 50}
`, port, canary, production)
	specs, err := weights.Parse("s.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "latency.sock")
	opt := haproxyconf.Options{Bind: fmt.Sprintf("127.0.0.1:%d", port), LatencyLog: sock}
	var c *Collector
	var extra []*os.File
	if pipe {
		var w *os.File
		if c, w, err = Pipe(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		opt.LatencyFD, extra = 3, []*os.File{w}
	} else if c, err = Listen(sock); err != nil {
		t.Fatal(err)
	}
	r, err := haproxyconf.Render(specs[0], opt)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, r.Config, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("the socket is left behind: %v", err)
		}
	})
	proc := haproxytest.StartWith(t, haproxytest.Binary(t), cfgPath, extra)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	haproxytest.WaitListening(t, addr)
	cli := &haproxy.MasterCLI{Socket: proc.MasterSock}

	send := func(n int) {
		for i := 0; i < n; i++ {
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	send(100)
	rep := waitLines(t, cli, c, 100)
	can, prod := server(t, rep, "canary"), server(t, rep, "production")
	if can.Requests != 50 || can.Errors != 10 || prod.Requests != 50 || prod.Errors != 0 {
		t.Errorf("counts: canary %d/%d, production %d/%d; want 50 with 10 errors, 50 with 0", can.Errors, can.Requests, prod.Errors, prod.Requests)
	}
	if n := can.Latency.Total(); n != 50 {
		t.Errorf("canary latencies: %d, want 50", n)
	}
	if p50 := can.Latency.Quantile(0.5); p50 < 35 || p50 > 80 {
		t.Errorf("canary p50 %.1f ms, want about 40", p50)
	}
	if p95 := prod.Latency.Quantile(0.95); p95 > 20 {
		t.Errorf("production p95 %.1f ms, want well under the canary's 40", p95)
	}

	// A reload: a new worker counts from 0, the histograms go on.
	if _, err := cli.Command(context.Background(), "reload"); err != nil {
		t.Fatal(err)
	}
	var after *Report
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		after, err = Read(ctx, cli, c)
		return err == nil && after.Worker != rep.Worker, nil
	})
	if err != nil {
		t.Fatalf("no new worker after the reload: %v", err)
	}
	if got := server(t, after, "canary"); got.Requests != 0 || got.Latency.Total() != 50 || after.LatencyEpoch != rep.LatencyEpoch {
		t.Errorf("after the reload: canary %d requests (want 0), %d latencies (want 50), epoch %q (want %q)",
			got.Requests, got.Latency.Total(), after.LatencyEpoch, rep.LatencyEpoch)
	}
	// The new worker logs where the old one did (the old one's "stopped"
	// notice is a line too, malformed here).
	send(10)
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		return c.lines.Load()-c.malformed.Load() == 110, nil
	})
	if err != nil {
		t.Errorf("after the reload: %d lines (%d malformed), want 110 requests' lines", c.lines.Load(), c.malformed.Load())
	}
}

// TestPipeNeverHoldsHAProxy: with the request log's pipe full and nobody
// reading it (a sidecar frozen, or falling behind), HAProxy goes on
// serving at full speed and drops log lines; once read again, the log
// goes on.
func TestPipeNeverHoldsHAProxy(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(ok.Close)
	dir := t.TempDir()
	port := haproxytest.FreePort(t)
	specs, err := weights.Parse("s.yaml", []byte(fmt.Sprintf("service: s\nport: %d\ntracks:\n  production: {version: \"1\", address: \"%s\"}\ngroups: {}\ndefault: main\nbackends:\n  main: {production: 100}\n", port, ok.Listener.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	c, w, err := Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	// The smallest pipe the kernel makes (a page): full after ~160 lines.
	rc, _ := c.pipe.SyscallConn()
	rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 4096) })
	r, err := haproxyconf.Render(specs[0], haproxyconf.Options{Bind: fmt.Sprintf("127.0.0.1:%d", port), LatencyFD: 3})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, r.Config, 0o644); err != nil {
		t.Fatal(err)
	}
	proc := haproxytest.StartWith(t, haproxytest.Binary(t), cfgPath, []*os.File{w})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	haproxytest.WaitListening(t, addr)
	if n := haproxytest.Load("http://"+addr+"/", 4, time.Second); n < 1000 {
		t.Fatalf("%d requests answered in 1 s with the log's pipe full: HAProxy waits for its reader", n)
	} else {
		t.Logf("%d requests answered in 1 s with the log's pipe full", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cli := &haproxy.MasterCLI{Socket: proc.MasterSock}
	wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		before := c.lines.Load()
		time.Sleep(50 * time.Millisecond)
		return c.lines.Load() == before, nil // what the pipe held is read
	})
	held := c.lines.Load()
	if held == 0 || held > 400 {
		t.Errorf("%d lines were in the full pipe, want about 160 (a page)", held)
	}
	for i := 0; i < 50; i++ {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	waitLines(t, cli, c, held+50)
}

// waitLines reads Reports until the collector has read n lines.
func waitLines(t *testing.T, st Stats, c *Collector, n int64) *Report {
	t.Helper()
	var rep *Report
	var err error
	wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		rep, err = Read(ctx, st, c)
		return err == nil && rep.LogLines >= n, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LogLines != n || rep.LogMalformed != 0 {
		t.Fatalf("log lines %d (%d malformed), want %d", rep.LogLines, rep.LogMalformed, n)
	}
	return rep
}

func server(t *testing.T, rep *Report, name string) Server {
	t.Helper()
	for _, s := range rep.Servers {
		if s.Backend == "main" && s.Server == name {
			return s
		}
	}
	t.Fatalf("no server main/%s in %+v", name, rep.Servers)
	return Server{}
}

func TestObserveLines(t *testing.T) {
	c := &Collector{hist: map[haproxyconf.ServerKey]*analysis.Histogram{}}
	for _, line := range []string{
		"main canary 200 12 10",
		"main canary 503 1 -1",      // no response: no latency
		"main <NOSRV> 503 0 -1",     // no server
		"main canary 200 12",        // short
		"main canary 200 12 x",      // not a number
		"main production 200 3 2 x", // long
	} {
		c.Observe([]byte(line))
	}
	lat := c.latency()
	h := lat[haproxyconf.ServerKey{Backend: "main", Server: "canary"}]
	if n := h.Total(); n != 1 || len(lat) != 1 {
		t.Errorf("histograms %v, want one latency of main/canary", lat)
	}
	if c.lines.Load() != 6 || c.malformed.Load() != 3 {
		t.Errorf("lines %d, malformed %d; want 6 and 3", c.lines.Load(), c.malformed.Load())
	}
}

// BenchmarkCollectorObserve is the sidecar's CPU per request log line
// read (parsing and the histogram; the socket read is the kernel's).
func BenchmarkCollectorObserve(b *testing.B) {
	c := &Collector{hist: map[haproxyconf.ServerKey]*analysis.Histogram{}}
	line := []byte("canary canary 200 12 10")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.Observe(line)
	}
}
