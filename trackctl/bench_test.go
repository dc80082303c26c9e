package trackctl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trackrouter/trackrouter/controller"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// BenchmarkStatus30 runs trackctl status -A on 30 converged services like
// account-service (150 Deployments, ~720 pods): its time and the API
// requests it makes (5 whatever the number of services).
// Run: go test ./internal/trackctl -run '^$' -bench Status30 -benchtime 20x -timeout 30m
func BenchmarkStatus30(b *testing.B) {
	c, ctx := fleet30(b)
	var requests atomic.Int64
	e := &env{name: "trackctl", stdout: io.Discard, stderr: io.Discard}
	b.ResetTimer()
	for b.Loop() {
		o := &statusOptions{output: "table", minEndpoints: 2, requests: &requests, kube: kubeFlags{kubeconfig: c.Kubeconfig, allNamespaces: true}}
		// No sidecars report here: every service has problems, exit 1.
		if err := e.runStatus(ctx, o, nil); err != nil && err != errProblems {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
}

// BenchmarkBoard30 is the board on the 30-service fleet: the whole
// overview over HTTP from a warm server, its bytes, and the API requests
// the board sends while 10 pages stay open for a minute (goal: 0 after
// the first lists; the watches stay open).
//
//	go test ./trackctl -run '^$' -bench Board30 -benchtime 20x
func BenchmarkBoard30(b *testing.B) {
	c, ctx := fleet30(b)
	var requests atomic.Int64
	bctx, cancel := context.WithCancel(ctx)
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		e := &env{name: "trackctl", stdout: io.Discard, stderr: io.Discard}
		done <- e.runBoard(bctx, &boardOptions{kube: kubeFlags{kubeconfig: c.Kubeconfig, allNamespaces: true}, addr: "127.0.0.1:0",
			minEndpoints: 2, requests: &requests, ready: func(a string) { addr <- a }})
	}()
	defer func() { cancel(); <-done }()
	url := "http://" + <-addr + "/"
	get := func() int {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return int(n)
	}
	get() // warm
	size := 0
	b.ResetTimer()
	for b.Loop() {
		size = get()
	}
	b.StopTimer()
	b.ReportMetric(float64(size), "bytes/page")
	// 10 open pages for a minute.
	before := requests.Load()
	vctx, vcancel := context.WithTimeout(ctx, time.Minute)
	defer vcancel()
	for i := 0; i < 10; i++ {
		go func() {
			req, _ := http.NewRequestWithContext(vctx, http.MethodGet, url+"events", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	<-vctx.Done()
	perViewer := float64(requests.Load()-before) / 10
	b.ReportMetric(perViewer, "api-requests/viewer/min")
	fmt.Printf("board, 30 services: %d bytes per overview; %d API requests in a minute with 10 pages open (%.1f per viewer)\n", size, requests.Load()-before, perViewer)
}

// fleet30 is the 30-service fleet (150 Deployments, 120 HAProxy pods) on
// the test cluster, converged, with the controller running until the
// benchmark ends.
func fleet30(b *testing.B) (*testcluster.Cluster, context.Context) {
	c := testcluster.Get(b)
	if err := c.AddNodes(context.Background(), 8); err != nil { // room for ~720 pods
		b.Fatal(err)
	}
	ctx := context.Background()
	ns := "status-bench"
	c.Namespace(b, ns)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- controller.Execute(cctx, controller.Config{Kubeconfig: c.Kubeconfig, Namespace: ns, RouterImage: "trackrouter:test", Workers: 4}, quietLog())
	}()
	defer func() { cancel(); <-done }()
	for s := 0; s < 30; s++ {
		name := fmt.Sprintf("svc-%02d", s)
		tmpl := &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":latest"}}},
		}}
		if _, err := c.Client.CoreV1().PodTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{weights.ServiceLabel: name}},
			Data: map[string]string{weights.DataKey: strings.ReplaceAll(benchSpec, "SERVICE", name)}}
		if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		deps, err := c.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		ready := 0
		for _, d := range deps.Items {
			if d.Spec.Replicas != nil && d.Status.AvailableReplicas == *d.Spec.Replicas {
				ready++
			}
		}
		if ready == 30*5 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of 150 Deployments available after 10 minutes", ready)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c, ctx
}

// BenchmarkFleetConvergence: a weight edit of the spec ConfigMap until all
// four HAProxy pods report it applied (status shows them on the new spec,
// with the new weight live), with four real sidecars and HAProxys.
// Run: go test ./internal/trackctl -run '^$' -bench FleetConvergence -benchtime 20x
func BenchmarkFleetConvergence(b *testing.B) {
	r := newFleet(b)
	r.waitHealthy()
	var times []time.Duration
	w := 5
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		next := 6 + i%50
		start := time.Now()
		r.editSpec(fmt.Sprintf("{canary: %d,", w), fmt.Sprintf("{canary: %d,", next))
		r.poll("all four on the new spec", func() error { return fleetOnSpec(r, "canary", "canary", next) })
		times = append(times, time.Since(start))
		w = next
	}
	b.StopTimer()
	slices.Sort(times)
	p50, max := times[len(times)/2], times[len(times)-1]
	b.ReportMetric(float64(p50.Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(max.Microseconds())/1000, "ms-max")
	b.Logf("edit -> 4 HAProxy pods report it applied: p50 %s, max %s over %d edits", p50.Round(time.Millisecond), max.Round(time.Millisecond), len(times))
}

const benchSpec = `service: SERVICE
port: 8080
tracks:
  internal:   {version: 1.0.0, replicas: 2}
  canary:     {version: "1.0", replicas: 4}
  paid:       {version: 0.2.3, replicas: 4}
  production: {version: 0.2.3, replicas: 10}
groups: {INTERNAL: internal, FREE: canary, ENTERPRISE: enterprise}
default: paid
backends:
  internal:   {internal: 100}
  canary:     {canary: 5, production: 95}
  paid:       {paid: 5, production: 95}
  enterprise: {production: 100}
`
