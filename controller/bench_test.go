package controller

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"context"
	"fmt"
	"github.com/trackrouter/trackrouter/controller/releases"
	"github.com/trackrouter/trackrouter/internal/kube"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// BenchmarkConverge30 creates 30 service specs like account-service (24 pods
// each: ~720 pods and 150 Services, the size of the original setup), times
// until every Deployment is Available, then counts the controller's writes
// over a steady-state window (TRACKROUTER_STEADY, default 30s; the README's
// number uses 5m).
// Run: TRACKROUTER_STEADY=5m go test ./controller -run '^$' -bench Converge30 -benchtime 1x -timeout 30m
func BenchmarkConverge30(b *testing.B) {
	c := testcluster.Get(b)
	if err := c.AddNodes(context.Background(), 8); err != nil { // room for ~720 pods
		b.Fatal(err)
	}
	steady := 30 * time.Second
	if s := os.Getenv("TRACKROUTER_STEADY"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		steady = d
	}
	for i := 0; i < b.N; i++ {
		ctx := context.Background()
		ns := fmt.Sprintf("bench-%d", i)
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := c.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The controller's client is limited as the shipped binary's is
		// (--kube-api-qps and --kube-api-burst defaults), not the test's.
		rc := rest.CopyConfig(c.Config)
		kube.SetRate(rc, 0, 0)
		shipped, err := kubernetes.NewForConfig(rc)
		if err != nil {
			b.Fatal(err)
		}
		ctrl, factories := newController(shipped, ns, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { factories.Start(cctx.Done()); ctrl.Run(cctx, 4); factories.Shutdown(); close(done) }()

		start := time.Now()
		for s := 0; s < 30; s++ {
			name := fmt.Sprintf("svc-%02d", s)
			tmpl := &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":latest"}}},
			}}
			if _, err := c.Client.CoreV1().PodTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			spec := strings.ReplaceAll(benchSpec, "SERVICE", name)
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{weights.ServiceLabel: name}},
				Data: map[string]string{weights.DataKey: spec}}
			if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		for {
			deps, err := c.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ready := 0
			for j := range deps.Items {
				if releases.Available(&deps.Items[j]) {
					ready++
				}
			}
			if ready == 30*5 {
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("%d of 150 Deployments Available after 10 minutes", ready)
			}
			time.Sleep(200 * time.Millisecond)
		}
		converged := time.Since(start)
		pods, _ := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		writes := ctrl.Writes.Load()
		time.Sleep(steady)
		steadyWrites := ctrl.Writes.Load() - writes
		cancel()
		<-done
		b.ReportMetric(converged.Seconds(), "s-to-converge")
		b.ReportMetric(float64(len(pods.Items)), "pods")
		b.ReportMetric(float64(writes), "writes-to-converge")
		b.ReportMetric(float64(steadyWrites), "writes-in-steady-state")
		b.Logf("30 specs, %d pods: converged in %.1fs with %d writes; %d writes in %s of steady state", len(pods.Items), converged.Seconds(), writes, steadyWrites, steady)
	}
}

const benchSpec = `service: SERVICE
port: 8080
tracks:
  internal:   {version: v1.18.0, replicas: 2}
  canary:     {version: v1.17.0, replicas: 4}
  paid:       {version: v1.15.0, replicas: 4}
  production: {version: v1.15.0, replicas: 10}
groups: {INTERNAL: internal, FREE: canary, ENTERPRISE: enterprise}
default: paid
backends:
  internal:   {internal: 100}
  canary:     {canary: 5, production: 95}
  paid:       {paid: 5, production: 95}
  enterprise: {production: 100}
`
