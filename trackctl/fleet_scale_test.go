package trackctl

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// scaleRun is the shipped track-controller binary, run on a fleet of
// services on the test cluster, and what it measured.
type scaleRun struct {
	tb         testing.TB
	c          *testcluster.Cluster
	bin, dir   string
	namespaces []string
	onlyNS     string // --namespace, when the fleet has one namespace
	services   int
	metrics    string
	cmd        *exec.Cmd
	exited     chan struct{}
}

// controllerMetrics are the counters of the controller's /metrics that
// the run reads.
type controllerMetrics struct {
	writes      float64            // trackcontroller_writes_total: owned objects
	requests    map[string]float64 // trackcontroller_api_requests_total by "VERB resource"
	cpu, rssMiB float64
}

func (m controllerMetrics) apiWrites(leases bool) float64 {
	n := 0.0
	for k, v := range m.requests {
		verb, resource, _ := strings.Cut(k, " ")
		if isWrite(verb) && (leases || resource != "leases") {
			n += v
		}
	}
	return n
}

func isWrite(verb string) bool {
	return verb == "POST" || verb == "PUT" || verb == "PATCH" || verb == "DELETE"
}

func (m controllerMetrics) total() float64 {
	n := 0.0
	for _, v := range m.requests {
		n += v
	}
	return n
}

// minus is what was counted between two reads, by "VERB resource".
func (m controllerMetrics) minus(o controllerMetrics) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m.requests {
		if d := v - o.requests[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// The fleet's services are benchSpec: the seed's preferred 2/4/4/10
// replicas and the default 4 HAProxy pods, 24 pods and 5 Services each.

// newScaleRun builds the shipped binary and makes the namespaces of a
// fleet of n services (one namespace: the controller runs with
// --namespace; several: on every namespace, as shipped).
func newScaleRun(tb testing.TB, n, namespaces int) *scaleRun {
	tb.Helper()
	c := testcluster.Get(tb)
	r := &scaleRun{tb: tb, c: c, dir: tb.TempDir(), services: n}
	r.bin = filepath.Join(r.dir, "track-controller")
	if out, err := exec.Command("go", "build", "-o", r.bin, "../cmd/track-controller").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	if err := c.AddNodes(context.Background(), n/10+2); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < namespaces; i++ {
		ns := fmt.Sprintf("scale-%d-%02d", n, i)
		c.Namespace(tb, ns)
		r.namespaces = append(r.namespaces, ns)
	}
	if namespaces == 1 {
		r.onlyNS = r.namespaces[0]
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "trackrouter-system", metav1.GetOptions{}); err != nil {
		c.Namespace(tb, "trackrouter-system")
	}
	tb.Cleanup(r.stop)
	return r
}

// start runs the shipped binary with the install's flags (but the
// webhook, which nothing calls here, and alerts) and its client limits,
// and waits until /readyz answers 200; it returns how long that took.
func (r *scaleRun) start() time.Duration {
	r.tb.Helper()
	r.metrics = fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(r.tb))
	args := []string{"--kubeconfig", r.c.Kubeconfig, "--router-image", "ghcr.io/trackrouter/trackrouter:0.1.0",
		"--lease-namespace=trackrouter-system", fmt.Sprintf("--lease-name=scale-%d", r.services), "--metrics-addr", r.metrics}
	if r.onlyNS != "" {
		args = append(args, "--namespace", r.onlyNS)
	}
	log, err := os.OpenFile(filepath.Join(r.dir, "controller.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.tb.Fatal(err)
	}
	r.cmd = exec.Command(r.bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = log, log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := r.cmd.Start(); err != nil {
		r.tb.Fatal(err)
	}
	r.exited = make(chan struct{})
	go func() { r.cmd.Wait(); log.Close(); close(r.exited) }()
	for {
		resp, err := http.Get("http://" + r.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		select {
		case <-r.exited:
			out, _ := os.ReadFile(filepath.Join(r.dir, "controller.log"))
			r.tb.Fatalf("track-controller exited:\n%s", out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > 5*time.Minute {
			r.tb.Fatal("track-controller not ready after 5 minutes")
		}
	}
}

// stop stops the binary by its PID (SIGTERM, as the kubelet does).
func (r *scaleRun) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

func (r *scaleRun) read() controllerMetrics {
	r.tb.Helper()
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		r.tb.Fatal(err)
	}
	defer resp.Body.Close()
	m := controllerMetrics{requests: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, _ := strconv.ParseFloat(rest, 64)
		switch {
		case name == "trackcontroller_writes_total":
			m.writes = v
		case name == "process_cpu_seconds_total":
			m.cpu = v
		case name == "process_resident_memory_bytes":
			m.rssMiB = v / (1 << 20)
		case strings.HasPrefix(name, "trackcontroller_api_requests_total{"):
			labels := map[string]string{}
			for _, kv := range strings.Split(strings.Trim(strings.TrimPrefix(name, "trackcontroller_api_requests_total"), "{}"), ",") {
				k, v, _ := strings.Cut(kv, "=")
				labels[k] = strings.Trim(v, `"`)
			}
			m.requests[labels["verb"]+" "+labels["resource"]] = v
		}
	}
	return m
}

// each runs write for every service of the fleet (its namespace and name),
// 8 at a time, and fails the run on the first error.
func (r *scaleRun) each(write func(ns, name string) error) {
	r.tb.Helper()
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	next := atomic.Int64{}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= r.services {
					return
				}
				if err := write(r.namespaces[i%len(r.namespaces)], fmt.Sprintf("svc-%03d", i)); err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		r.tb.Fatal(*err)
	}
}

// create writes every service's PodTemplate and spec.
func (r *scaleRun) create() {
	r.tb.Helper()
	ctx := context.Background()
	r.each(func(ns, name string) error {
		tmpl := &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":latest"}}},
		}}
		if _, err := r.c.Client.CoreV1().PodTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
			return err
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{weights.ServiceLabel: name}},
			Data: map[string]string{weights.DataKey: strings.ReplaceAll(benchSpec, "SERVICE", name)}}
		_, err := r.c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		return err
	})
}

// converged is when, since a run's start, every Deployment, every Service,
// both, and every Deployment available were there.
type converged struct {
	deployments, services, written, available time.Duration
}

// converge polls the fleet until every Deployment is available; status
// adds to the timeline it prints every 15 s.
func (r *scaleRun) converge(start time.Time, status func() string) converged {
	r.tb.Helper()
	var c converged
	want, lastLog := r.services*5, time.Now()
	for {
		d, s, a := r.count()
		if c.deployments == 0 && d == want {
			c.deployments = time.Since(start)
		}
		if c.services == 0 && s == want {
			c.services = time.Since(start)
		}
		if c.written == 0 && d == want && s == want {
			c.written = time.Since(start)
		}
		if time.Since(lastLog) > 15*time.Second {
			progress("%5.0f s: %d/%d Deployments (%d available), %d/%d Services%s", time.Since(start).Seconds(), d, want, a, s, want, status())
			lastLog = time.Now()
		}
		if c.written != 0 && a == want {
			c.available = time.Since(start)
			return c
		}
		if time.Since(start) > 20*time.Minute {
			r.tb.Fatalf("after 20 minutes: %d of %d Deployments (%d available), %d of %d Services", d, want, a, s, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// count is the fleet's Deployments and Services, and the Deployments
// available, from the API server's watch cache.
func (r *scaleRun) count() (deployments, services, available int) {
	r.tb.Helper()
	ctx := context.Background()
	ours := func(ns string) bool { return slices.Contains(r.namespaces, ns) }
	deps, err := r.c.Client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		r.tb.Fatal(err)
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		if !ours(d.Namespace) {
			continue
		}
		deployments++
		if d.Spec.Replicas != nil && d.Status.AvailableReplicas == *d.Spec.Replicas && d.Status.ObservedGeneration == d.Generation {
			available++
		}
	}
	svcs, err := r.c.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		r.tb.Fatal(err)
	}
	for _, s := range svcs.Items {
		if ours(s.Namespace) {
			services++
		}
	}
	return deployments, services, available
}

// edits bumps the canary's version of k services, one at a time, and
// times each from the spec's update to the new canary Deployment written
// (the first object the edit makes), while the others are at rest.
func (r *scaleRun) edits(k int) []time.Duration {
	r.tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := map[string]chan time.Time{}
	var mu sync.Mutex
	var names []string
	for i := 0; i < k; i++ {
		idx := i * r.services / k
		name := fmt.Sprintf("svc-%03d-canary-1.%d", idx, i+1)
		seen[name] = make(chan time.Time, 1)
		names = append(names, name)
	}
	w, err := r.c.Client.AppsV1().Deployments("").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		r.tb.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			if d, ok := ev.Object.(*appsv1.Deployment); ok && ev.Type == watch.Added {
				mu.Lock()
				if ch := seen[d.Name]; ch != nil {
					select {
					case ch <- time.Now():
					default:
					}
				}
				mu.Unlock()
			}
		}
	}()
	var out []time.Duration
	for i := 0; i < k; i++ {
		idx := i * r.services / k
		ns, svc := r.namespaces[idx%len(r.namespaces)], fmt.Sprintf("svc-%03d", idx)
		cm, err := r.c.Client.CoreV1().ConfigMaps(ns).Get(ctx, svc, metav1.GetOptions{})
		if err != nil {
			r.tb.Fatal(err)
		}
		cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], `canary:     {version: "1.0"`, fmt.Sprintf(`canary:     {version: "1.%d"`, i+1), 1)
		if _, err := r.c.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			r.tb.Fatal(err)
		}
		edited := time.Now()
		select {
		case at := <-seen[names[i]]:
			out = append(out, at.Sub(edited))
		case <-time.After(2 * time.Minute):
			r.tb.Fatalf("%s: no new canary Deployment %s 2 minutes after the edit", svc, names[i])
		}
		time.Sleep(time.Second)
	}
	return out
}

// status runs trackctl status -A and returns how long it took and how
// many API requests it sent.
func (r *scaleRun) status() (time.Duration, int64) {
	var requests atomic.Int64
	e := &env{name: "trackctl", stdout: io.Discard, stderr: io.Discard}
	o := &statusOptions{output: "table", minEndpoints: 2, requests: &requests, kube: kubeFlags{kubeconfig: r.c.Kubeconfig, allNamespaces: true}}
	start := time.Now()
	// No sidecar reports here: every service has problems, exit 1.
	if err := e.runStatus(context.Background(), o, nil); err != nil && err != errProblems {
		r.tb.Fatal(err)
	}
	return time.Since(start), requests.Load()
}

// scaleResult is what a run measured.
type scaleResult struct {
	written, available           time.Duration
	deployments, services        time.Duration // every Deployment, every Service written
	convergeCPU                  float64       // the controller's CPU seconds until every Deployment was available
	convergeAPIWrites            float64       // its API writes until then, Events and the Lease included
	pods                         int
	convergeWrites               float64
	steady                       time.Duration
	steadyWrites                 map[string]float64 // API writes at rest but the Lease's, by verb and resource
	steadyRequests, leaseWrites  float64
	rssMiB, cpuShare             float64
	editTimes                    []time.Duration
	statusTime                   time.Duration
	statusRequests               int64
	restartReady                 time.Duration
	restartWrites, restartWindow float64
}

// run measures a fleet of r.services: empty -> every object written ->
// every Deployment available; a window at rest; spec edits; trackctl
// status -A; a restart of the controller on the full fleet.
func (r *scaleRun) run(steady time.Duration, edits int) scaleResult {
	r.tb.Helper()
	var res scaleResult
	r.start()
	start := time.Now()
	r.create()
	c := r.converge(start, func() string {
		m := r.read()
		return fmt.Sprintf("; controller: %.0f writes, %.0f API requests, %.1f s CPU", m.writes, m.total(), m.cpu)
	})
	res.deployments, res.services, res.written, res.available = c.deployments, c.services, c.written, c.available
	m := r.read()
	res.convergeWrites, res.convergeCPU = m.writes, m.cpu
	res.convergeAPIWrites = m.apiWrites(true)
	pods, err := r.c.Client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		r.tb.Fatal(err)
	}
	for _, p := range pods.Items {
		if slices.Contains(r.namespaces, p.Namespace) {
			res.pods++
		}
	}
	// At rest: after a health interval for the last changes to settle.
	time.Sleep(15 * time.Second)
	before, t0 := r.read(), time.Now()
	var rss []float64
	for time.Since(t0) < steady {
		time.Sleep(min(5*time.Second, steady))
		rss = append(rss, r.read().rssMiB)
	}
	after := r.read()
	res.steady = time.Since(t0)
	res.steadyWrites = map[string]float64{}
	for k, v := range after.minus(before) {
		verb, resource, _ := strings.Cut(k, " ")
		if isWrite(verb) {
			if resource == "leases" {
				res.leaseWrites += v
			} else {
				res.steadyWrites[k] = v
			}
		}
	}
	res.steadyRequests = after.total() - before.total()
	res.rssMiB = slices.Max(rss)
	res.cpuShare = (after.cpu - before.cpu) / res.steady.Seconds()

	res.editTimes = r.edits(edits)
	slices.Sort(res.editTimes)

	res.statusTime, res.statusRequests = r.status()

	// A restart on the full fleet: ready in how long, and its writes.
	time.Sleep(5 * time.Second)
	r.stop()
	res.restartReady = r.start()
	base := r.read()
	window := min(steady, time.Minute)
	time.Sleep(window)
	res.restartWrites = r.read().apiWrites(false) - base.apiWrites(false)
	res.restartWindow = window.Seconds()
	return res
}

func (res scaleResult) report(tb testing.TB, n int) {
	tb.Helper()
	q := func(p float64) time.Duration {
		return res.editTimes[min(len(res.editTimes)-1, int(p*float64(len(res.editTimes))))]
	}
	tb.Logf("%d services, %d pods: every Deployment written in %.1f s, every Service in %.1f s, every Deployment available in %.1f s; %.0f objects written, %.0f API writes (Events, Lease), %.1f s of the controller's CPU",
		n, res.pods, res.deployments.Seconds(), res.services.Seconds(), res.available.Seconds(), res.convergeWrites, res.convergeAPIWrites, res.convergeCPU)
	tb.Logf("at rest for %s: %.0f API requests (%.2f/s), writes but the Lease's %v, Lease writes %.0f; RSS up to %.0f MiB, CPU %.1f%% of a core",
		res.steady.Round(time.Second), res.steadyRequests, res.steadyRequests/res.steady.Seconds(), res.steadyWrites, res.leaseWrites, res.rssMiB, 100*res.cpuShare)
	tb.Logf("spec edit -> new canary Deployment written, %d edits: p50 %s, p99 %s, max %s",
		len(res.editTimes), q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), res.editTimes[len(res.editTimes)-1].Round(time.Millisecond))
	tb.Logf("trackctl status -A: %s, %d API requests", res.statusTime.Round(time.Millisecond), res.statusRequests)
	tb.Logf("restart on the full fleet: ready in %s, %.0f writes (but the Lease's) in the next %.0f s",
		res.restartReady.Round(time.Millisecond), res.restartWrites, res.restartWindow)
}

// fleetServices is TRACKROUTER_SERVICES, 300 when unset.
func fleetServices(b *testing.B) int {
	s := os.Getenv("TRACKROUTER_SERVICES")
	if s == "" {
		return 300
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("TRACKROUTER_SERVICES=%q: a number of services, 1 or more", s)
	}
	return n
}

// progress prints a run's timeline to stderr as it goes: a benchmark's log
// keeps only its first 10 lines, and the report must be among them.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fleet: "+format+"\n", args...)
}

// BenchmarkFleetScale runs the shipped track-controller binary, with its
// own flags and client limits, on TRACKROUTER_SERVICES services (default
// 300: 7,200 pods and 1,500 Services, spread over 10 namespaces; the
// controller watches every namespace, as shipped), measures what
// scaleRun.run says, and prints it. TRACKROUTER_STEADY (default 5m) is
// the window at rest.
//
//	go test ./trackctl -run '^$' -bench FleetScale -benchtime 1x -timeout 60m
func BenchmarkFleetScale(b *testing.B) {
	n, steady := fleetServices(b), 5*time.Minute
	if s := os.Getenv("TRACKROUTER_STEADY"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		steady = d
	}
	for i := 0; i < b.N; i++ {
		r := newScaleRun(b, n, 10)
		res := r.run(steady, 50)
		res.report(b, n)
		b.ReportMetric(res.written.Seconds(), "s-to-written")
		b.ReportMetric(res.available.Seconds(), "s-to-available")
		b.ReportMetric(res.rssMiB, "MiB-rss")
		b.ReportMetric(100*res.cpuShare, "%cpu-at-rest")
		b.ReportMetric(res.statusTime.Seconds(), "s-status")
	}
}

// TestFleetScale30 is the same code on 30 services in one namespace
// (the binary with --namespace), with short windows: at rest the
// controller writes nothing but its Lease, each spec edit writes its
// new Deployment, trackctl status -A sends a bounded number of
// requests, and a restart on the full fleet writes nothing. Its numbers
// are logged; the 300-service ones are BenchmarkFleetScale's.
func TestFleetScale30(t *testing.T) {
	r := newScaleRun(t, 30, 1)
	res := r.run(15*time.Second, 5)
	res.report(t, 30)
	if res.pods != 30*24 {
		t.Errorf("%d pods, want %d", res.pods, 30*24)
	}
	if len(res.steadyWrites) != 0 {
		t.Errorf("writes at rest (but the Lease's): %v", res.steadyWrites)
	}
	if res.restartWrites != 0 {
		t.Errorf("a restart on a converged fleet wrote %.0f times", res.restartWrites)
	}
	// One list per kind, whatever the number of services.
	if res.statusRequests > 10 {
		t.Errorf("trackctl status -A sent %d requests", res.statusRequests)
	}
}

// BenchmarkFleetFloor is what the test cluster alone can do: the 14
// objects per service the controller writes (5 Deployments of 2/4/4/10/4
// pods, 5 Services, a ServiceAccount, Role, RoleBinding and ConfigMap)
// created by a bare client with the controller's client limits (100
// requests/s, burst 200) and 8 workers, one create each and no reads. The
// time to every Deployment available is the floor under
// BenchmarkFleetScale's on the same machine.
//
//	go test ./trackctl -run '^$' -bench FleetFloor -benchtime 1x -timeout 60m
func BenchmarkFleetFloor(b *testing.B) {
	n := fleetServices(b)
	for i := 0; i < b.N; i++ {
		r := newScaleRun(b, n, 10)
		cfg := rest.CopyConfig(r.c.Config)
		cfg.QPS, cfg.Burst = 100, 200
		client := kubernetes.NewForConfigOrDie(cfg)
		start := time.Now()
		r.each(func(ns, name string) error { return floorObjects(context.Background(), client, ns, name) })
		c := r.converge(start, func() string { return "" })
		written, available := c.written, c.available
		b.Logf("%d services by a bare client: every object written in %.1f s, every Deployment available in %.1f s", n, written.Seconds(), available.Seconds())
		b.ReportMetric(written.Seconds(), "s-to-written")
		b.ReportMetric(available.Seconds(), "s-to-available")
	}
}

// floorObjects creates one service's 14 objects, as the controller would
// for benchSpec, one create each.
func floorObjects(ctx context.Context, client kubernetes.Interface, ns, name string) error {
	tracks := []struct {
		track    string
		replicas int32
	}{{"internal", 2}, {"canary", 4}, {"paid", 4}, {"production", 10}, {"haproxy", 4}}
	for _, t := range tracks {
		labels := map[string]string{"app": name, "track": t.track, "app.kubernetes.io/managed-by": "floor"}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name + "-" + t.track, Namespace: ns, Labels: labels},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return err
		}
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name + "-" + t.track, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{Replicas: &t.replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":latest"}}}}}}
		if _, err := client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	meta := metav1.ObjectMeta{Name: name + "-haproxy", Namespace: ns}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{}); err != nil {
		return err
	}
	role := &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}}
	if _, err := client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return err
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: meta.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: meta.Name, Namespace: ns}}}
	if _, err := client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return err
	}
	status := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name + "-haproxy-status", Namespace: ns}}
	_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, status, metav1.CreateOptions{})
	return err
}
