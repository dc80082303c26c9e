package samples

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/weights"
)

// BenchmarkMeasuringCost is the throughput cost of measuring: HAProxy on
// a rendered spec with the latency log read by a Collector, and without
// it, side by side in one run (rounds alternate, 16 keep-alive clients on
// loopback, the load generator on the same 2 cores). It prints the median
// requests/s of each and the difference, and the lines the collector read
// against the requests sent.
//
//	go test ./router/samples -run '^$' -bench MeasuringCost -benchtime 1x
func BenchmarkMeasuringCost(b *testing.B) {
	if v := os.Getenv("LATENCY_SAMPLE"); v != "" {
		fmt.Sscan(v, &benchSample)
	}
	const rounds, each, clients = 5, 3 * time.Second, 16
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	defer ok.Close()
	dir := b.TempDir()
	bin := haproxytest.Binary(b)
	for i := 0; i < b.N; i++ {
		rate, cpu := map[bool][]float64{}, map[bool][]float64{}
		var lines, sent int64
		for round := 0; round < rounds; round++ {
			for _, measure := range []bool{false, true} {
				port := haproxytest.FreePort(b)
				spec := fmt.Sprintf("service: s\nport: %d\ntracks:\n  canary: {version: \"2\", address: \"%s\"}\n  production: {version: \"1\", address: \"%s\"}\ngroups: {}\ndefault: main\nbackends:\n  main: {canary: 5, production: 95}\n",
					port, ok.Listener.Addr(), ok.Listener.Addr())
				specs, err := weights.Parse("s.yaml", []byte(spec))
				if err != nil {
					b.Fatal(err)
				}
				opt := haproxyconf.Options{Bind: fmt.Sprintf("127.0.0.1:%d", port)}
				ctx, cancel := context.WithCancel(context.Background())
				var c *Collector
				done := make(chan error, 1)
				if measure {
					opt.LatencyLog, opt.LatencySample = filepath.Join(dir, "latency.sock"), benchSample
					if c, err = Listen(opt.LatencyLog); err != nil {
						b.Fatal(err)
					}
					go func() { done <- c.Run(ctx) }()
				}
				r, err := haproxyconf.Render(specs[0], opt)
				if err != nil {
					b.Fatal(err)
				}
				cfg := filepath.Join(dir, fmt.Sprintf("h-%d-%v.cfg", round, measure))
				if err := os.WriteFile(cfg, r.Config, 0o644); err != nil {
					b.Fatal(err)
				}
				proc := haproxytest.Start(b, bin, cfg)
				haproxytest.WaitListening(b, opt.Bind)
				n := haproxytest.Load("http://"+opt.Bind+"/", clients, each)
				rate[measure] = append(rate[measure], float64(n)/each.Seconds())
				proc.Stop()
				cpu[measure] = append(cpu[measure], float64(proc.CPU().Microseconds())/float64(max(n, 1)))
				if measure {
					time.Sleep(100 * time.Millisecond)
					lines += c.lines.Load()
					sent += n
					cancel()
					<-done
				}
				cancel()
			}
		}
		without, with := haproxytest.Median(rate[false]), haproxytest.Median(rate[true])
		cw, cc := haproxytest.Median(cpu[false]), haproxytest.Median(cpu[true])
		fmt.Printf("measuring cost: HAProxy CPU per request, median %.1f µs without, %.1f µs with the log (%+.1f%%)\n", cw, cc, 100*(cc-cw)/cw)
		b.ReportMetric(without, "req/s-without")
		b.ReportMetric(with, "req/s-with")
		b.ReportMetric(100*(without-with)/without, "%-fewer")
		b.ReportMetric(100*float64(lines)/float64(max(sent, 1)), "%-lines-read")
		fmt.Printf("measuring cost: median %.0f requests/s without, %.0f with (%.1f%% fewer); rounds without %v, with %v; %.1f%% of the requests' log lines read\n",
			without, with, 100*(without-with)/without, haproxytest.Rounded(rate[false]), haproxytest.Rounded(rate[true]), 100*float64(lines)/float64(max(sent, 1)))
	}
}

// benchSample is the latency log's sampling in BenchmarkMeasuringCost
// ($LATENCY_SAMPLE, default 1: every request).
var benchSample = 1
