package samples

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/weights"
)

// BenchmarkMeasuringCost is the cost of measuring to HAProxy: HAProxy on a
// rendered spec with no request log, with the log to a unix datagram
// socket (--latency-log PATH), and with the log to a pipe (the default
// with --run-haproxy), each read by a Collector, side by side in one run
// (rounds alternate, 16 keep-alive clients on loopback, the load generator
// on the same 2 cores). It prints HAProxy's CPU time per request (user and
// system, from the kernel's accounting), the requests/s, and the share of
// the requests' log lines each collector read. The machine's own noise
// (other work on the same cores) moves whole rounds: each mode is compared
// with no log in the same round (the three run back to back, in an order
// that turns each round), and the median of those paired ratios, with
// their spread, is the cost. MEASURE_ROUNDS sets the rounds (default 5).
//
//	go test ./router/samples -run '^$' -bench MeasuringCost -benchtime 1x
func BenchmarkMeasuringCost(b *testing.B) {
	if v := os.Getenv("LATENCY_SAMPLE"); v != "" {
		fmt.Sscan(v, &benchSample)
	}
	const each, clients = 3 * time.Second, 16
	rounds := 5
	if v := os.Getenv("MEASURE_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	modes := []string{"none", "datagram", "pipe"}
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	defer ok.Close()
	dir := b.TempDir()
	bin := haproxytest.Binary(b)
	for i := 0; i < b.N; i++ {
		rate, cpu := map[string][]float64{}, map[string][]float64{}
		lines, sent := map[string]int64{}, map[string]int64{}
		for round := 0; round < rounds; round++ {
			for k := range modes {
				mode := modes[(k+round)%len(modes)]
				port := haproxytest.FreePort(b)
				spec := fmt.Sprintf("service: s\nport: %d\ntracks:\n  canary: {version: \"2\", address: \"%s\"}\n  production: {version: \"1\", address: \"%s\"}\ngroups: {}\ndefault: main\nbackends:\n  main: {canary: 5, production: 95}\n",
					port, ok.Listener.Addr(), ok.Listener.Addr())
				specs, err := weights.Parse("s.yaml", []byte(spec))
				if err != nil {
					b.Fatal(err)
				}
				opt := haproxyconf.Options{Bind: fmt.Sprintf("127.0.0.1:%d", port), LatencySample: benchSample}
				ctx, cancel := context.WithCancel(context.Background())
				var c *Collector
				var extra []*os.File
				switch mode {
				case "datagram":
					opt.LatencyLog = filepath.Join(dir, "latency.sock")
					if c, err = Listen(opt.LatencyLog); err != nil {
						b.Fatal(err)
					}
				case "pipe":
					var w *os.File
					if c, w, err = Pipe(); err != nil {
						b.Fatal(err)
					}
					defer w.Close()
					opt.LatencyFD, extra = 3, []*os.File{w}
				}
				done := make(chan error, 1)
				if c != nil {
					go func() { done <- c.Run(ctx) }()
				}
				r, err := haproxyconf.Render(specs[0], opt)
				if err != nil {
					b.Fatal(err)
				}
				cfg := filepath.Join(dir, fmt.Sprintf("h-%d-%s.cfg", round, mode))
				if err := os.WriteFile(cfg, r.Config, 0o644); err != nil {
					b.Fatal(err)
				}
				proc := haproxytest.StartWith(b, bin, cfg, extra)
				haproxytest.WaitListening(b, opt.Bind)
				n := haproxytest.Load("http://"+opt.Bind+"/", clients, each)
				rate[mode] = append(rate[mode], float64(n)/each.Seconds())
				proc.Stop()
				cpu[mode] = append(cpu[mode], float64(proc.CPU().Microseconds())/float64(max(n, 1)))
				if c != nil {
					time.Sleep(100 * time.Millisecond)
					lines[mode] += c.lines.Load()
					sent[mode] += n
					cancel()
					<-done
				}
				cancel()
			}
		}
		for _, mode := range modes {
			m := haproxytest.Median(cpu[mode])
			read := ""
			if mode != "none" {
				paired := make([]float64, rounds)
				for r := range paired {
					paired[r] = 100 * (cpu[mode][r] - cpu["none"][r]) / cpu["none"][r]
				}
				sort.Float64s(paired)
				cost := haproxytest.Median(paired)
				read = fmt.Sprintf(", paired with no log in each round: median %+.1f%% (rounds %+.1f%% to %+.1f%%, middle half %+.1f%% to %+.1f%%); %.1f%% of the requests' log lines read",
					cost, paired[0], paired[rounds-1], paired[rounds/4], paired[(3*rounds)/4], 100*float64(lines[mode])/float64(max(sent[mode], 1)))
				b.ReportMetric(cost, "%cpu-"+mode)
			}
			fmt.Printf("measuring cost: %-8s HAProxy CPU per request, median %.1f µs; median %.0f requests/s%s\n",
				mode, m, haproxytest.Median(rate[mode]), read)
		}
	}
}

// benchSample is the latency log's sampling in BenchmarkMeasuringCost
// ($LATENCY_SAMPLE, default 1: every request).
var benchSample = 1
