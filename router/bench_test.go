package router

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/router/source"
	"github.com/trackrouter/trackrouter/weights"
)

// Convergence: the time from an edit (a file write, or a ConfigMap update
// through the API) to the new state being live in HAProxy (weights
// confirmed with get weight, or a reload confirmed with show proc).
// Run: go test ./router -run '^$' -bench Convergence -benchtime 100x
func BenchmarkConvergence(b *testing.B) {
	for _, how := range []string{"runtime", "reload"} {
		b.Run("file/"+how, func(b *testing.B) {
			h := newHarness(b)
			measure(b, h, how, h.writeSpec)
		})
		b.Run("configmap/"+how, func(b *testing.B) {
			c := testcluster.Get(b)
			h := newHarness(b)
			ctx := context.Background()
			name := "bench-" + how
			cms := c.Client.CoreV1().ConfigMaps("default")
			cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
				Data: map[string]string{weights.DataKey: h.spec(5, 95)}}, metav1.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer cms.Delete(ctx, name, metav1.DeleteOptions{})
			src := &source.ConfigMapSource{Client: c.Client, Namespace: "default", Name: name, Log: h.router.Log}
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go src.Run(sctx, h.router.Submit)
			measure(b, h, how, func(data string) {
				cm.Data[weights.DataKey] = data
				if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func measure(b *testing.B, h *harness, how string, edit func(string)) {
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := 10 + i%200
		spec := h.spec(w, 100)
		marker := fmt.Sprintf(" weight %d ", w)
		if how == "reload" {
			spec = strings.Replace(spec, "  FREE: canary\n", fmt.Sprintf("  FREE: canary\n  B%d: canary\n", i), 1)
			marker = fmt.Sprintf("-i B%d }", i)
		}
		start := time.Now()
		edit(spec)
		for !bytes.Contains(h.router.Applied(), []byte(marker)) {
			if time.Since(start) > 10*time.Second {
				b.Fatalf("edit %d not applied within 10s", i)
			}
			time.Sleep(time.Millisecond)
		}
		times = append(times, time.Since(start))
		time.Sleep(60 * time.Millisecond) // past MinInterval: measure one edit, not a coalesced burst
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
	b.ReportMetric(ms(times[len(times)*99/100]), "p99-ms")
	b.ReportMetric(ms(times[len(times)-1]), "max-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// largeSpec is a service with 200 groups over 50 backends (each a canary
// and production pair), b00's canary at weight w, and extra groups
// X0..X(extra-1) (each one more ACL: a structural change, a reload).
func (h *harness) largeSpec(w, extra int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "service: account-service\nport: 8080\ntracks:\n")
	for _, t := range []string{"internal", "canary", "paid", "production"} {
		fmt.Fprintf(&sb, "  %s: {version: v1.0.0, address: %q}\n", t, h.backends[t].Addr)
	}
	sb.WriteString("groups:\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&sb, "  G%03d: b%02d\n", i, i%50)
	}
	for i := 0; i < extra; i++ {
		fmt.Fprintf(&sb, "  X%d: b01\n", i)
	}
	sb.WriteString("default: b00\nbackends:\n")
	for i := 0; i < 50; i++ {
		canary := 5
		if i == 0 {
			canary = w
		}
		fmt.Fprintf(&sb, "  b%02d: {canary: %d, production: 95}\n", i, canary)
	}
	return sb.String()
}

// BenchmarkLargeSpec: a service with 200 groups and 50 backends. A weight
// edit (runtime API, no reload) and a new group (render, haproxy -c, a
// reload confirmed by show proc) from the spec file's write to live.
// Run: go test ./router -run '^$' -bench LargeSpec -benchtime 100x
func BenchmarkLargeSpec(b *testing.B) {
	for _, how := range []string{"runtime", "reload"} {
		b.Run(how, func(b *testing.B) {
			extra := 0
			h := startHarness(b, func(h *harness) string { return h.largeSpec(5, extra) })
			h.waitFor("the large spec applied", func() bool { return strings.Contains(string(h.router.Applied()), "G199") })
			var times []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w := 10 + i%200
				marker := fmt.Sprintf(" weight %d ", w)
				if how == "reload" {
					w, extra = 5, extra+1
					marker = fmt.Sprintf("-i X%d }", extra-1)
				}
				start := time.Now()
				h.writeSpec(h.largeSpec(w, extra))
				for !bytes.Contains(h.router.Applied(), []byte(marker)) {
					if time.Since(start) > 10*time.Second {
						b.Fatalf("edit %d not applied within 10s", i)
					}
					time.Sleep(time.Millisecond)
				}
				times = append(times, time.Since(start))
				time.Sleep(60 * time.Millisecond)
			}
			b.StopTimer()
			slices.Sort(times)
			b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
			b.ReportMetric(ms(times[len(times)*9/10]), "p90-ms")
			b.ReportMetric(ms(times[len(times)*99/100]), "p99-ms")
			b.ReportMetric(ms(times[len(times)-1]), "max-ms")
			b.ReportMetric(float64(len(h.router.Applied())), "bytes-applied")
		})
	}
}

// BenchmarkReloadsUnderLoad reloads b.N times while 4 clients (2 keep-alive,
// 2 one connection per request) send requests, and reports the failures.
// Run: go test ./router -run '^$' -bench ReloadsUnderLoad -benchtime 100x
func BenchmarkReloadsUnderLoad(b *testing.B) {
	h := newHarness(b)
	l := startLoad(h.client.URL, "X-Traffic-Group", "FREE", 4)
	before := h.reloads()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		h.writeSpec(strings.Replace(h.spec(5, 95), "  FREE: canary\n", fmt.Sprintf("  FREE: canary\n  L%d: canary\n", i), 1))
		for h.reloads() < before+float64(i) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	ok, failed, errs := l.finish()
	b.ReportMetric(float64(ok), "requests")
	b.ReportMetric(float64(failed), "failed")
	if failed > 0 {
		b.Logf("failures: %v", errs)
	}
}

// BenchmarkFaultRecovery measures, per fault, the time from the fault
// clearing to the sidecar in sync with an edit made during the fault
// (HAProxy reports the new weight and trackrouter_in_sync is 1).
// Run: go test ./router -run '^$' -bench FaultRecovery -benchtime 10x
func BenchmarkFaultRecovery(b *testing.B) {
	faults := []struct {
		name string
		// inject makes the fault and returns the function that clears it.
		inject func(h *harness) (clear func())
	}{
		{"freeze-2s", func(h *harness) func() {
			pgid := h.masterPID()
			syscall.Kill(-pgid, syscall.SIGSTOP)
			return func() { time.Sleep(2 * time.Second); syscall.Kill(-pgid, syscall.SIGCONT) }
		}},
		{"haproxy-killed", func(h *harness) func() {
			return func() { syscall.Kill(-h.masterPID(), syscall.SIGKILL) }
		}},
		{"socket-removed", func(h *harness) func() {
			// The master's socket file is gone (an emptyDir wiped, a careless
			// rm): a SIGUSR2 reload makes the master create it again.
			return func() { os.Remove(h.cli.Socket) }
		}},
	}
	for _, f := range faults {
		b.Run(f.name, func(b *testing.B) {
			h := startHarness(b, nil, func(h *harness) {
				h.router.RestartAfter = time.Second
				h.router.UnresponsiveAfter = 500 * time.Millisecond
			})
			var times []time.Duration
			for i := 0; i < b.N; i++ {
				w := 10 + i%100
				clear := f.inject(h)
				h.writeSpec(h.spec(w, 100))
				clear()
				start := time.Now()
				for h.haproxyWeight("canary/canary") != w || testutil.ToFloat64(h.router.Metrics.InSync) != 1 {
					if time.Since(start) > 30*time.Second {
						b.Fatalf("not in sync 30s after %s cleared\n%s", f.name, h.logs.String())
					}
					time.Sleep(time.Millisecond)
				}
				times = append(times, time.Since(start))
			}
			slices.Sort(times)
			b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
			b.ReportMetric(ms(times[len(times)-1]), "max-ms")
		})
	}
}
