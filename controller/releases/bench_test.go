package releases

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/kube"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// requestCounter counts a client's requests by verb (kube.CountRequests
// sees each one).
type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *requestCounter) count(verb, _ string) {
	c.mu.Lock()
	c.n[verb]++
	c.mu.Unlock()
}

func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// fastMeasurer answers at once (a quiet canary: too few requests to
// judge), counting calls and the most running at once.
type fastMeasurer struct {
	calls, running, most atomic.Int64
}

func (m *fastMeasurer) Measure(context.Context, string, *weights.Spec, []haproxyconf.ServerKey, []haproxyconf.ServerKey) ([]analysis.PodCounts, []analysis.PodCounts, []string) {
	m.calls.Add(1)
	now := m.running.Add(1)
	defer m.running.Add(-1)
	for {
		most := m.most.Load()
		if now <= most || m.most.CompareAndSwap(most, now) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond) // a samples read's round trip
	return []analysis.PodCounts{{Pod: "p", Worker: "1", Requests: 1}}, []analysis.PodCounts{{Pod: "p", Worker: "1", Requests: 10}}, nil
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkReleaseLoop300 runs the release loop alone (no track
// reconciler: its cost is what is measured) on 300 services of the test
// cluster, each with a release in flight: 150 waiting for an approval, 150
// baking on the canary (a look every 30 s, measured at once by an
// in-memory Measurer). Over a window (TRACKROUTER_STEADY, default 1m) it
// prints the loop's API requests by verb, its CPU, and its looks, with the
// most measurements running at once (bounded by Workers).
//
//	go test ./controller/releases -run '^$' -bench ReleaseLoop300 -benchtime 1x -timeout 20m
func BenchmarkReleaseLoop300(b *testing.B) {
	c := testcluster.Get(b)
	window := time.Minute
	if s := os.Getenv("TRACKROUTER_STEADY"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		window = d
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("loop300-%d-%d", time.Now().Unix(), i)
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		const n = 300
		for s := 0; s < n; s++ {
			name := fmt.Sprintf("svc-%03d", s)
			text := strings.ReplaceAll(loopSpec, "SERVICE", name)
			if s%2 == 0 {
				text = strings.Replace(text, "internal:   {version: v1, replicas: 2}", "internal:   {version: v1, replicas: 2, gates: [approval]}", 1)
			}
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{weights.ServiceLabel: name}},
				Data: map[string]string{weights.DataKey: text}}
			if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		// The loop's client: the shipped limits, its requests counted.
		rc := rest.CopyConfig(c.Config)
		kube.SetRate(rc, 0, 0)
		counter := &requestCounter{n: map[string]int{}}
		kube.CountRequests(rc, counter.count)
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			b.Fatal(err)
		}
		f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
		m := &fastMeasurer{}
		loop := New(Config{Client: client, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Recorder: record.NewFakeRecorder(10000), Measurer: m},
			Informers{Specs: f.Core().V1().ConfigMaps(), Status: f.Core().V1().ConfigMaps(), Jobs: f.Batch().V1().Jobs(), RouterPods: f.Core().V1().Pods()})
		lctx, cancel := context.WithCancel(ctx)
		f.Start(lctx.Done())
		f.WaitForCacheSync(lctx.Done())
		done := make(chan struct{})
		go func() { loop.Run(lctx, Workers); close(done) }()
		phases := func() map[string]int {
			out := map[string]int{}
			cms, err := c.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: pipeline.LabelReleaseOf})
			if err != nil {
				b.Fatal(err)
			}
			for _, cm := range cms.Items {
				st, _, _ := pipeline.Read(cm.Data)
				out[string(st.Phase)+" "+st.Stage]++
			}
			return out
		}
		wait := func(what string, ok func(map[string]int) bool) {
			deadline := time.Now().Add(5 * time.Minute)
			for {
				p := phases()
				if ok(p) {
					return
				}
				if time.Now().After(deadline) {
					b.Fatalf("%s: %v after 5 minutes", what, p)
				}
				time.Sleep(time.Second)
			}
		}
		wait("every release's first look", func(p map[string]int) bool { return p["idle "] == n })
		start := time.Now()
		for s := 0; s < n; s++ {
			name := fmt.Sprintf("svc-%03d", s)
			cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "internal:   {version: v1,", "internal:   {version: v2,", 1)
			if _, err := c.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		// A stage without gates waits for a person: the odd services'
		// build is promoted to the canary by hand, where it bakes.
		wait("150 waiting for approval, 150 for a person", func(p map[string]int) bool {
			return p["gates internal"] == n/2 && p["manual internal"] == n/2
		})
		for s := 1; s < n; s += 2 {
			name := fmt.Sprintf("svc-%03d", s)
			cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "canary:     {version: v1,", "canary:     {version: v2,", 1)
			if _, err := c.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		wait("150 waiting for approval, 150 baking", func(p map[string]int) bool {
			return p["gates internal"] == n/2 && p["baking canary"] == n/2
		})
		inFlight := time.Since(start)
		counter.take()
		calls, cpu := m.calls.Load(), cpuSeconds()
		time.Sleep(window)
		reqs, cpu, calls := counter.take(), cpuSeconds()-cpu, m.calls.Load()-calls
		cancel()
		<-done
		total := 0
		for _, v := range reqs {
			total += v
		}
		b.ReportMetric(float64(total)/window.Seconds(), "requests/s")
		b.ReportMetric(100*cpu/window.Seconds(), "%cpu")
		fmt.Printf("release loop, %d services in flight (%d waiting for approval, %d baking, a look every 30 s): in flight %s after the deploys; over %s: %d API requests (%.2f/s, %.4f per service per second; by verb %v), CPU %.1f%% of a core, %d looks measured, at most %d measurements at once (Workers %d)\n",
			n, n/2, n/2, inFlight.Round(100*time.Millisecond), window, total, float64(total)/window.Seconds(), float64(total)/window.Seconds()/n, reqs, 100*cpu/window.Seconds(), calls, m.most.Load(), Workers)
	}
}

const loopSpec = `service: SERVICE
port: 8080
tracks:
  internal:   {version: v1, replicas: 2}
  canary:     {version: v1, replicas: 4, analysis: {bake: 1h, interval: 30s, minRequests: 1000}}
  production: {version: v1, replicas: 10}
groups: {INTERNAL: internal, FREE: canary}
default: main
backends:
  internal: {internal: 100}
  canary:   {canary: 5, production: 95}
  main:     {production: 100}
`
