package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/weights"
)

// releaseState is the release state of service in ns; zero when it has
// none (yet).
func releaseState(client kubernetes.Interface, ns, service string) pipeline.State {
	rel, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), pipeline.ConfigMapName(service), metav1.GetOptions{})
	if err != nil {
		return pipeline.State{}
	}
	st, _, _ := pipeline.Read(rel.Data)
	return st
}

// editSpec replaces from with to in the spec ConfigMap name's text.
func editSpec(t *testing.T, client kubernetes.Interface, ns, name, from, to string) {
	t.Helper()
	ctx := context.Background()
	cur, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Data[weights.DataKey] = strings.Replace(cur.Data[weights.DataKey], from, to, 1)
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// countingMeasurer says every pod served n requests more at each look,
// none failed; with unmeasured set, one pod could not be read.
type countingMeasurer struct {
	looks      atomic.Int64
	unmeasured atomic.Bool
}

func (m *countingMeasurer) Measure(_ context.Context, _ string, _ *weights.Spec, _, _ []haproxyconf.ServerKey) ([]analysis.PodCounts, []analysis.PodCounts, []string) {
	n := m.looks.Add(1) * 50
	c := []analysis.PodCounts{{Pod: "p", Worker: "1", Requests: n}}
	b := []analysis.PodCounts{{Pod: "p", Worker: "1", Requests: 10 * n}}
	if m.unmeasured.Load() {
		return c, b, []string{"pod q: connection refused"}
	}
	return c, b, nil
}

// loopRig is a namespace with the example, its canary baking with
// analysis, and a controller on it with opt (the router image, the log
// and the grace filled in) until the test ends, past the release's first
// look.
func loopRig(t *testing.T, analysis string, opt Options) (kubernetes.Interface, string, *corev1.ConfigMap) {
	t.Helper()
	client, ns, cm := setup(t)
	ctx := context.Background()
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "canary:     {version: 1.0, replicas: 4}", "canary:     {version: 1.0, replicas: 4, analysis: "+analysis+"}", 1)
	if !strings.Contains(cm.Data[weights.DataKey], "analysis:") {
		t.Fatalf("the example's canary line changed:\n%s", cm.Data[weights.DataKey])
	}
	cm, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opt.RouterImage, opt.Log, opt.ServiceGrace = "trackrouter:test", slog.New(slog.NewTextHandler(io.Discard, nil)), testServiceGrace
	f := NewFactories(client, ns, time.Minute)
	ctrl := New(client, f.Informers(), opt)
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	f.Start(runCtx.Done())
	go ctrl.Run(runCtx, 1)
	poll(t, "the release's first look", func() error {
		if st := releaseState(client, ns, "account-service"); st.Phase != pipeline.Idle {
			return fmt.Errorf("phase %q", st.Phase)
		}
		return nil
	})
	return client, ns, cm
}

// deployOnInternal sets internal to version by hand (it has no gate) and
// waits for the release to start.
func deployOnInternal(t *testing.T, client kubernetes.Interface, ns, name, version string) {
	t.Helper()
	editSpec(t, client, ns, name, "internal:   {version: 1.0.0", "internal:   {version: "+version)
	poll(t, "release "+version+" on internal", func() error {
		if st := releaseState(client, ns, "account-service"); st.Version != version {
			return fmt.Errorf("%s %s on %s", st.Version, st.Phase, st.Stage)
		}
		return nil
	})
}

// TestReleaseLoopSeams: the release loop on the real API server with its
// clock and its measurements injected: a 10-minute bake judged every 30 s
// walks in no wall time as the clock is stepped (the queue's delays run on
// the same clock), waits while a pod cannot be measured, and promotes once
// every pod is.
func TestReleaseLoopSeams(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	m := &countingMeasurer{}
	m.unmeasured.Store(true)
	client, ns, cm := loopRig(t, "{bake: 10m, interval: 30s, minRequests: 100}", Options{Clock: clk, Measurer: m})
	// canary is set to a new build by hand (internal has no gate): the
	// release follows it there and bakes.
	deployOnInternal(t, client, ns, cm.Name, "1.1.0")
	editSpec(t, client, ns, cm.Name, "canary:     {version: 1.0,", "canary:     {version: 1.1.0,")
	// The bake begins once the canary serves only 1.1.0 (its pods up, the
	// old ones gone): the clock steps from there.
	poll(t, "baking on canary", func() error {
		if st := releaseState(client, ns, "account-service"); st.Phase != pipeline.Baking || st.Stage != "canary" || !st.Settled {
			return fmt.Errorf("%s %s on %s (waiting for %q): %s", st.Version, st.Phase, st.Stage, st.Settling, st.Reason)
		}
		return nil
	})
	start := time.Now()
	for i := 0; i < 24; i++ { // 12 minutes of the fake clock
		clk.Step(30 * time.Second)
		time.Sleep(50 * time.Millisecond)
	}
	poll(t, "a judgement that names the unmeasured pod", func() error {
		st := releaseState(client, ns, "account-service")
		if st.Phase != pipeline.Baking || st.Judged == nil || len(st.Judged.Unmeasured) == 0 {
			return fmt.Errorf("%s %s on %s, judged %+v", st.Version, st.Phase, st.Stage, st.Judged)
		}
		return nil
	})
	if looks := m.looks.Load(); looks < 10 {
		t.Errorf("%d looks in 12 minutes of the clock at a 30 s interval, want about 24", looks)
	}
	m.unmeasured.Store(false)
	clk.Step(30 * time.Second)
	poll(t, "promoted to paid once measured", func() error {
		if st := releaseState(client, ns, "account-service"); st.Stage != "paid" {
			return fmt.Errorf("%s %s on %s: %s", st.Version, st.Phase, st.Stage, st.Reason)
		}
		return nil
	})
	t.Logf("a 10-minute bake walked in %s of wall time, %d looks", time.Since(start).Round(time.Millisecond), m.looks.Load())
}

// TestBuildThatNeverStarts: a build whose Deployment never becomes
// available is rolled back once it passes its progress deadline, not
// baked on the old version's pods (which, with healthy numbers, promoted
// it: a build that never ran would have walked to production). Every
// node is cordoned, so the new version's pods cannot start while the old
// ones serve on; the new Deployment's deadline is shortened to 2 s (a
// field the controller does not apply).
func TestBuildThatNeverStarts(t *testing.T) {
	ctx := context.Background()
	m := &countingMeasurer{} // healthy numbers, whoever serves them
	client, ns, cm := loopRig(t, "{bake: 3s, interval: 1s, minRequests: 10}", Options{Measurer: m})
	poll(t, "the canary's pods ready", func() error {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, "account-service-canary-1.0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas < 4 {
			return fmt.Errorf("%d of 4 available", d.Status.AvailableReplicas)
		}
		return nil
	})
	deployOnInternal(t, client, ns, cm.Name, "1.1.0")
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cordon := func(on bool) {
		for _, n := range nodes.Items {
			patch := fmt.Sprintf(`{"spec":{"unschedulable":%v}}`, on)
			if _, err := client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Error(err)
			}
		}
	}
	cordon(true)
	t.Cleanup(func() { cordon(false) })
	editSpec(t, client, ns, cm.Name, "canary:     {version: 1.0,", "canary:     {version: 1.1.0,")
	poll(t, "the canary's 1.1.0 Deployment, its deadline shortened", func() error {
		_, err := client.AppsV1().Deployments(ns).Patch(ctx, "account-service-canary-1.1.0", types.MergePatchType, []byte(`{"spec":{"progressDeadlineSeconds":2}}`), metav1.PatchOptions{FieldManager: "test"})
		return err
	})
	poll(t, "the release waiting for the canary to run 1.1.0", func() error {
		if st := releaseState(client, ns, "account-service"); st.Stage != "canary" || !strings.Contains(st.Settling, "canary's 1.1.0 pods to be available") {
			return fmt.Errorf("%s %s on %s, settling %q: %s", st.Version, st.Phase, st.Stage, st.Settling, st.Reason)
		}
		return nil
	})
	var st pipeline.State
	poll(t, "the build rolled back", func() error {
		if st = releaseState(client, ns, "account-service"); st.Phase != pipeline.RolledBack {
			return fmt.Errorf("%s %s on %s, settling %q: %s", st.Version, st.Phase, st.Stage, st.Settling, st.Reason)
		}
		return nil
	})
	if st.Stage != "canary" || !strings.Contains(st.Reason, "canary never ran 1.1.0: Deployment account-service-canary-1.1.0 passed its progress deadline") {
		t.Errorf("rolled back on %s: %s", st.Stage, st.Reason)
	}
	cur, err := client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if specs, err := weights.Parse("spec", []byte(cur.Data[weights.DataKey])); err != nil || specs[0].Tracks["canary"].Version != "1.0" {
		t.Errorf("the canary's version was not put back (%v):\n%s", err, cur.Data[weights.DataKey])
	}
	if m.looks.Load() != 0 {
		t.Errorf("the bake measured %d times a canary that never ran the build", m.looks.Load())
	}
	t.Logf("rolled back: %s", st.Reason)
}

// slowMeasurer blocks for block on the service slow, and answers at once
// for every other, counting its looks by service.
type slowMeasurer struct {
	slow  string
	block time.Duration
	looks sync.Map // service -> *atomic.Int64
}

func (m *slowMeasurer) Measure(ctx context.Context, _ string, spec *weights.Spec, _, _ []haproxyconf.ServerKey) ([]analysis.PodCounts, []analysis.PodCounts, []string) {
	v, _ := m.looks.LoadOrStore(spec.Service, &atomic.Int64{})
	n := v.(*atomic.Int64).Add(1) * 50
	if spec.Service == m.slow {
		select {
		case <-time.After(m.block):
		case <-ctx.Done():
		}
	}
	return []analysis.PodCounts{{Pod: "p", Worker: "1", Requests: n}}, []analysis.PodCounts{{Pod: "p", Worker: "1", Requests: 10 * n}}, nil
}

// TestReleaseLoopIsolation: a service whose measurements take 20 s (hung
// HAProxy pods) does not delay another service's release: with a 2 s bake
// judged every second, the other is promoted within seconds, while the
// slow one has not finished a single look.
func TestReleaseLoopIsolation(t *testing.T) {
	client, ns, cm := setup(t)
	ctx := context.Background()
	analysisLine := "canary:     {version: 1.0, replicas: 4, analysis: {bake: 2s, interval: 1s, minRequests: 100}}"
	text := strings.Replace(cm.Data[weights.DataKey], "canary:     {version: 1.0, replicas: 4}", analysisLine, 1)
	cm.Data[weights.DataKey] = text
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	slow := cm.DeepCopy()
	slow.ObjectMeta = metav1.ObjectMeta{Name: "slow", Namespace: ns, Labels: map[string]string{weights.ServiceLabel: "slow"}}
	slow.Data[weights.DataKey] = strings.Replace(text, "service: account-service", "service: slow", 1)
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, slow, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m := &slowMeasurer{slow: "slow", block: 20 * time.Second}
	f := NewFactories(client, ns, time.Minute)
	ctrl := New(client, f.Informers(), Options{RouterImage: "trackrouter:test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ServiceGrace: testServiceGrace, Measurer: m})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.Start(runCtx.Done())
	go ctrl.Run(runCtx, 1)
	for _, name := range []string{"slow", cm.Name} {
		svc := map[string]string{"slow": "slow"}[name]
		if svc == "" {
			svc = "account-service"
		}
		poll(t, svc+"'s first look", func() error {
			if st := releaseState(client, ns, svc); st.Phase != pipeline.Idle {
				return fmt.Errorf("phase %q", st.Phase)
			}
			return nil
		})
		editSpec(t, client, ns, name, "internal:   {version: 1.0.0", "internal:   {version: 1.1.0")
		editSpec(t, client, ns, name, "canary:     {version: 1.0,", "canary:     {version: 1.1.0,")
	}
	start := time.Now()
	poll(t, "account-service promoted past canary while slow hangs", func() error {
		if st := releaseState(client, ns, "account-service"); st.Stage != "paid" {
			return fmt.Errorf("%s %s on %s: %s", st.Version, st.Phase, st.Stage, st.Reason)
		}
		return nil
	})
	took := time.Since(start)
	if took > 12*time.Second {
		t.Errorf("account-service waited %s behind the slow service's 20 s measurements", took.Round(time.Millisecond))
	}
	if st := releaseState(client, ns, "slow"); st.Stage == "paid" {
		t.Errorf("the slow service was promoted already: its looks hang 20 s")
	}
	t.Logf("account-service promoted %s after both canaries began baking, while slow's first look hung", took.Round(time.Millisecond))
}

// clockMeasurer: the canary served one request per second of the clock
// since origin, the baseline ten, none failed, on one pod whose worker
// never changes: what a bake counts depends only on when it started.
type clockMeasurer struct {
	clk    *clocktesting.FakeClock
	origin time.Time
}

func (m clockMeasurer) Measure(context.Context, string, *weights.Spec, []haproxyconf.ServerKey, []haproxyconf.ServerKey) ([]analysis.PodCounts, []analysis.PodCounts, []string) {
	n := int64(m.clk.Since(m.origin) / time.Second)
	return []analysis.PodCounts{{Pod: "p", Worker: "1", Requests: n}}, []analysis.PodCounts{{Pod: "p", Worker: "1", Requests: 10 * n}}, nil
}

// TestReleaseFailover: a controller stopped mid-bake and replaced by
// another promotes at the moment the first would have. The canary serves
// 1 request/s and needs 300: counted from the bake's first look, the
// release is promoted at the look 300 s after it; a controller that
// counted from its own first look (150 s in) would wait until 480 s.
// Each step of the clock waits for the loop's judgement of it (read from
// the release state), never for a sleep.
func TestReleaseFailover(t *testing.T) {
	client, ns, cm := setup(t)
	ctx := context.Background()
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "canary:     {version: 1.0, replicas: 4}", "canary:     {version: 1.0, replicas: 4, analysis: {bake: 2m, interval: 30s, minRequests: 300}}", 1)
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	origin := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(origin)
	run := func() (stop func()) {
		f := NewFactories(client, ns, time.Minute)
		ctrl := New(client, f.Informers(), Options{RouterImage: "trackrouter:test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ServiceGrace: testServiceGrace, Clock: clk, Measurer: clockMeasurer{clk, origin}})
		runCtx, cancel := context.WithCancel(ctx)
		f.Start(runCtx.Done())
		done := make(chan struct{})
		go func() { ctrl.Run(runCtx, 1); close(done) }()
		return func() { cancel(); <-done; f.Shutdown() }
	}
	stop := run()
	defer func() { stop() }()
	poll(t, "the release's first look", func() error {
		if st := releaseState(client, ns, "account-service"); st.Phase != pipeline.Idle {
			return fmt.Errorf("phase %q", st.Phase)
		}
		return nil
	})
	editSpec(t, client, ns, cm.Name, "internal:   {version: 1.0.0", "internal:   {version: 1.1.0")
	poll(t, "release 1.1.0 on internal", func() error {
		if st := releaseState(client, ns, "account-service"); st.Version != "1.1.0" {
			return fmt.Errorf("%s %s on %s", st.Version, st.Phase, st.Stage)
		}
		return nil
	})
	editSpec(t, client, ns, cm.Name, "canary:     {version: 1.0,", "canary:     {version: 1.1.0,")
	var firstLook time.Time
	poll(t, "the bake's first look", func() error {
		st := releaseState(client, ns, "account-service")
		if st.Phase != pipeline.Baking || st.Stage != "canary" || st.Judged == nil {
			return fmt.Errorf("%s %s on %s: %s", st.Version, st.Phase, st.Stage, st.Reason)
		}
		firstLook = st.Judged.At
		return nil
	})
	// step moves the clock 30 s and waits for the loop's look at it: a
	// judgement at the new time, or the stage moved on.
	step := func() pipeline.State {
		t.Helper()
		clk.Step(30 * time.Second)
		now := clk.Now()
		var st pipeline.State
		poll(t, "the look at "+now.Format("15:04:05"), func() error {
			st = releaseState(client, ns, "account-service")
			if st.Stage != "canary" || st.Judged != nil && !st.Judged.At.Before(now) {
				return nil
			}
			return fmt.Errorf("%s %s on %s, judged %+v", st.Version, st.Phase, st.Stage, st.Judged)
		})
		return st
	}
	for range 5 { // 150 s of the bake under the first controller
		if st := step(); st.Stage != "canary" {
			t.Fatalf("promoted %s after the first look, before 300 requests: %s", clk.Since(firstLook), st.Reason)
		}
	}
	stop()
	stop = run() // another controller, from what the first wrote
	promoted := time.Time{}
	for range 12 {
		st := step()
		if st.Stage != "canary" {
			promoted = clk.Now()
			t.Logf("promoted %s after the bake's first look: %s", promoted.Sub(firstLook), st.Reason)
			break
		}
	}
	if want := firstLook.Add(300 * time.Second); !promoted.Equal(want) {
		t.Errorf("promoted at %s after the bake's first look, want 300s: the second controller did not go on from the first's counts", promoted.Sub(firstLook))
	}
}
