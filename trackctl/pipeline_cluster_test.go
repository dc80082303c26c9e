package trackctl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/trackrouter/trackrouter/controller"
	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/internal/release"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// backend is one track's build, on this machine: it fails a share of its
// requests and answers after a delay, as the test sets.
type backend struct {
	srv            *httptest.Server
	failPerMille   atomic.Int64
	delayMS        atomic.Int64
	served, failed atomic.Int64
}

func newBackend(t testing.TB) *backend {
	b := &backend{}
	var n atomic.Int64
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := b.delayMS.Load(); d > 0 {
			time.Sleep(time.Duration(d) * time.Millisecond)
		}
		b.served.Add(1)
		if f := b.failPerMille.Load(); f > 0 && n.Add(1)%(1000/f) == 0 {
			b.failed.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// pipelineRig is a service with a pipeline on the test cluster: its tracks
// answer on this machine (address:), two HAProxy pods run real sidecars,
// and traffic flows through one of them for every group.
type pipelineRig struct {
	*fleetRig
	backends map[string]*backend
	stop     func()
	target   atomic.Pointer[string] // the HAProxy the traffic goes through
	start    func()                 // starts the controller
	metrics  string                 // its /metrics address
}

func newPipelineRig(t *testing.T) *pipelineRig {
	haproxytest.Binary(t)
	c := testcluster.Get(t)
	ns := specNamespace(t, c, "pipe")
	r := &pipelineRig{fleetRig: bareFleet(t, c, ns),
		backends: map[string]*backend{}}
	for _, tr := range []string{"internal", "canary", "paid", "production"} {
		r.backends[tr] = newBackend(t)
	}
	// The canary's bake is long enough for its baseline to reach the 400
	// requests a p95 test needs even while a slow build holds workers.
	canaryAnalysis := "analysis: {bake: 12s, interval: 1s, minRequests: 30}"
	analysis := "analysis: {bake: 8s, interval: 1s, minRequests: 30}"
	spec := fmt.Sprintf(`service: account-service
port: 8080
template: account-service
router: {replicas: 2}
tracks:
  internal:   {version: "1.0", replicas: 1, address: "%s", gates: [approval]}
  canary:     {version: "1.0", replicas: 1, address: "%s", %s}
  paid:       {version: "1.0", replicas: 1, address: "%s", %s}
  production: {version: "1.0", replicas: 1, address: "%s"}
groups: {INTERNAL: internal, FREE: free, PAID: paid}
default: all
backends:
  internal: {internal: 100}
  free:     {canary: 50, production: 50}
  paid:     {paid: 20, production: 80}
  all:      {production: 100}
`, r.backends["internal"].addr(), r.backends["canary"].addr(), canaryAnalysis, r.backends["paid"].addr(), analysis, r.backends["production"].addr())
	ctx := context.Background()
	r.setSpec(spec)
	r.asSA = c.Kubeconfig
	// Health every second: its pruning of gone pods' reports must leave
	// the release ConfigMap's keys alone.
	r.metrics = fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	r.start = func() { r.startControllerWith(controller.Config{HealthInterval: time.Second, MetricsAddr: r.metrics}) }
	r.start()
	r.poll("HAProxy tier 2/2", func() error { return r.ready("account-service-haproxy", 2) })
	for _, pod := range r.routerPods() {
		r.startSidecar(pod)
	}
	r.poll("2 sidecars serving samples", func() error {
		st, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, fleet.StatusName("account-service-haproxy"), metav1.GetOptions{})
		if err != nil {
			return err
		}
		reports, _ := fleet.Parse(st.Data)
		n := 0
		for _, rep := range reports {
			if rep.Samples != "" && rep.InSync {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d of 2 in sync with a samples URL", n)
		}
		return nil
	})
	r.traffic()
	t.Cleanup(func() {
		r.stop()
		r.stopAll()
	})
	return r
}

// traffic sends about 600 requests a second through the first HAProxy,
// to every group in turn (half of them FREE: the canary's baseline needs
// 400 requests in a bake for a p95), until the test ends.
func (r *pipelineRig) traffic() {
	for _, a := range r.binds {
		r.target.Store(&a)
		break
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	groups := []string{"FREE", "PAID", "FREE", "INTERNAL", "FREE", ""}
	client := &http.Client{Timeout: 2 * time.Second}
	for w := 0; w < 12; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*r.target.Load()+"/", nil)
				if g := groups[(i+w)%len(groups)]; g != "" {
					req.Header.Set("X-Traffic-Group", g)
				}
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	r.stop = func() {
		cancel()
		wg.Wait()
	}
}

// run runs a trackctl command against the rig's namespace.
func (r *pipelineRig) run(args ...string) (int, string) {
	r.t.Helper()
	if !slices.Contains(args, "-f") || args[0] == "follow" {
		args = append(args, "--kubeconfig", r.c.Kubeconfig, "-n", r.ns)
	}
	return r.trackctl(args...)
}

// trackctl runs trackctl with args as given: its exit code and output.
func (r *pipelineRig) trackctl(args ...string) (int, string) {
	var b strings.Builder
	e := &env{name: "trackctl", stdout: &b, stderr: &b}
	root := e.rootCommand()
	root.SetArgs(args)
	root.SetOut(&b)
	root.SetErr(&b)
	c := ExitOK
	if _, err := root.ExecuteC(); err != nil {
		c = ExitProblem
		if err != errProblems {
			fmt.Fprintln(&b, err)
		}
	}
	return c, b.String()
}

func (r *pipelineRig) state() pipeline.State {
	r.t.Helper()
	cm, err := r.client.CoreV1().ConfigMaps(r.ns).Get(context.Background(), pipeline.ConfigMapName("account-service"), metav1.GetOptions{})
	if err != nil {
		return pipeline.State{}
	}
	st, _, err := pipeline.Read(cm.Data)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// waitRelease waits until the release of version is in phase on stage.
func (r *pipelineRig) waitRelease(version string, phase pipeline.Phase, stage string) pipeline.State {
	r.t.Helper()
	var st pipeline.State
	r.poll(fmt.Sprintf("release %s %s on %s", version, phase, stage), func() error {
		st = r.state()
		if st.Version != version || st.Phase != phase || st.Stage != stage {
			var ds []string
			for _, d := range st.Decisions {
				ds = append(ds, fmt.Sprintf("%s %s %s: %s", d.Kind, d.Version, d.Stage, d.Reason))
			}
			return fmt.Errorf("release %s %s on %s; decisions:\n%s", st.Version, st.Phase, st.Stage, strings.Join(ds, "\n"))
		}
		return nil
	})
	return st
}

func (r *pipelineRig) history() []release.HistoryEntry {
	cm, err := r.client.CoreV1().ConfigMaps(r.ns).Get(context.Background(), "account-service", metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return release.ReadHistory(cm)
}

// TestPipelineOnCluster: with bakes shortened to 8 s, a healthy build
// walks every stage to production with nobody acting but the approver,
// across an HAProxy restart and a controller restart, without a double
// promotion; a build with 5%
// errors on the canary is rolled back and production never serves it; a
// slow build is rolled back; status shows the release all along.
func TestPipelineOnCluster(t *testing.T) {
	r := newPipelineRig(t)
	r.waitRelease("", pipeline.Idle, "")

	// A healthy build.
	if code, out := r.run("deploy", "account-service", "1.1", "--reason", "build 1"); code != ExitOK {
		t.Fatalf("deploy: %s", out)
	}
	r.waitRelease("1.1", pipeline.Gates, "internal")
	if _, out := r.status(); !strings.Contains(strings.Join(strings.Fields(out), " "), "release 1.1: gates on internal") ||
		!strings.Contains(strings.Join(strings.Fields(out), " "), "approval (trackctl approve account-service)") {
		t.Errorf("status does not show the release waiting for approval:\n%s", out)
	}
	if code, out := r.run("approve", "account-service", "--reason", "QA ok"); code != ExitOK || !strings.Contains(out, "approved.internal") {
		t.Fatalf("approve: exit %d\n%s", code, out)
	}
	r.waitRelease("1.1", pipeline.Baking, "canary")
	// The HAProxy that carries the traffic restarts mid-bake (its sidecar
	// and HAProxy stop, and start again on another port): its counters
	// start from 0, which must not look like a verdict.
	for pod, bind := range r.binds {
		if bind == *r.target.Load() {
			r.sidecars[pod]()
			r.startSidecar(pod)
			addr := r.binds[pod]
			haproxytest.WaitListening(t, addr)
			r.target.Store(&addr)
			break
		}
	}
	// The controller stops mid-bake and starts again: the release goes on
	// from where it was.
	r.stopCtrl()
	time.Sleep(2 * time.Second)
	r.start()
	st := r.waitRelease("1.1", pipeline.Done, "production")
	s := specOf(t, r.c, r.ns)
	for _, tr := range s.Stages {
		if s.Tracks[tr].Version != "1.1" {
			t.Errorf("%s runs %s, want 1.1", tr, s.Tracks[tr].Version)
		}
	}
	promotions := map[string]int{}
	for _, h := range r.history() {
		if h.User == controller.ManagedBy {
			for _, c := range h.Changes {
				promotions[strings.Fields(c)[0]]++
			}
		}
	}
	if promotions["tracks.canary.version"] != 1 || promotions["tracks.paid.version"] != 1 || promotions["tracks.production.version"] != 1 {
		t.Errorf("promotions recorded by track-controller: %v, want one per stage after internal", promotions)
	}
	if !strings.Contains(st.Reason, "the release is done") {
		t.Errorf("reason %q", st.Reason)
	}

	// A build with 5% errors on the canary.
	if code, out := r.run("deploy", "account-service", "1.2"); code != ExitOK {
		t.Fatalf("deploy: %s", out)
	}
	r.waitRelease("1.2", pipeline.Gates, "internal")
	r.run("approve", "account-service")
	r.waitRelease("1.2", pipeline.Baking, "canary")
	// The bake as the leader judges it, in its metrics.
	r.poll("the bake in the controller's metrics", func() error {
		resp, err := http.Get("http://" + r.metrics + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, want := range []string{`trackcontroller_release_bake_verdict{action="wait",namespace="` + r.ns + `",service="account-service",stage="canary",version="1.2"} 1`,
			`trackcontroller_release_bake_requests{namespace="` + r.ns + `",service="account-service",side="canary",stage="canary",version="1.2"}`} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("no %s", want)
			}
		}
		return nil
	})
	prodFailed := r.backends["production"].failed.Load()
	bad := time.Now()
	r.backends["canary"].failPerMille.Store(50)
	st = r.waitRelease("1.2", pipeline.RolledBack, "canary")
	took := time.Since(bad)
	recorded := time.Now()
	r.poll("the rollback live on both HAProxy pods", func() error {
		cm, err := r.client.CoreV1().ConfigMaps(r.ns).Get(context.Background(), fleet.StatusName("account-service-haproxy"), metav1.GetOptions{})
		if err != nil {
			return err
		}
		reports, _ := fleet.Parse(cm.Data)
		for pod, rep := range reports {
			if w, ok := rep.Weights["free"]["canary"]; !ok || w != 0 {
				return fmt.Errorf("%s: free/canary weight %d live", pod, w)
			}
		}
		return nil
	})
	t.Logf("the rollback was live on every HAProxy pod (as their reports say) %s after the state recorded it", time.Since(recorded).Round(10*time.Millisecond))
	r.backends["canary"].failPerMille.Store(0)
	t.Logf("5%% errors rolled back in %s: %s", took.Round(time.Second), st.Reason)
	if took > 3*time.Minute || !strings.Contains(st.Reason, "canary errors ") || !strings.Contains(st.Reason, "limit +0.5 points") {
		t.Errorf("rolled back after %s (want within 3 min): %s", took, st.Reason)
	}
	s = specOf(t, r.c, r.ns)
	if s.Tracks["canary"].Version != "1.1" || s.Backends["free"]["canary"] != 0 || s.Tracks["paid"].Version != "1.1" {
		t.Errorf("after the rollback: canary %s at %d, paid %s", s.Tracks["canary"].Version, s.Backends["free"]["canary"], s.Tracks["paid"].Version)
	}
	if n := r.backends["production"].failed.Load() - prodFailed; n != 0 {
		t.Errorf("production failed %d requests", n)
	}
	r.poll("a Warning Event ReleaseRollback", func() error {
		evs, err := r.client.CoreV1().Events(r.ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "ReleaseRollback" && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "1.2 rolled back on canary") {
				return nil
			}
		}
		return fmt.Errorf("none among %d Events", len(evs.Items))
	})
	// A cron job that watches status's exit code sees the rollback.
	// (FAILING comes first while the HAProxy pods apply the rollback.)
	r.poll("status exits 1 and says ROLLEDBACK", func() error {
		if code, out := r.status("account-service"); code == ExitOK || !strings.Contains(out, "ROLLEDBACK") {
			return fmt.Errorf("exit %d:\n%s", code, out)
		}
		return nil
	})
	// The board shows the rollback with the evidence it was decided on.
	bo := &boardOptions{samples: "off", readOnly: true}
	bo.kube.kubeconfig, bo.kube.namespace = r.c.Kubeconfig, r.ns
	boardAddr := serveBoard(t, bo)
	r.poll("the board draws the rollback's evidence", func() error {
		_, page := get(t, "http://"+boardAddr+"/service/"+r.ns+"/account-service")
		for _, want := range []string{"decided: rollback on canary", `<th scope="row">5xx rate</th><td>canary`, "<strong>over the limit</strong>", `<span class="step failed">✗ canary (rolled back)</span>`} {
			if !strings.Contains(page, want) {
				return fmt.Errorf("no %s", want)
			}
		}
		return nil
	})

	// A slow build: p95 far over production's. The canary's weight comes
	// back when the build reaches it.
	r.run("deploy", "account-service", "1.3")
	r.waitRelease("1.3", pipeline.Gates, "internal")
	r.run("approve", "account-service")
	r.waitRelease("1.3", pipeline.Baking, "canary")
	if s := specOf(t, r.c, r.ns); s.Backends["free"]["canary"] != 50 {
		t.Errorf("canary weight %d after the next build reached it, want 50 back", s.Backends["free"]["canary"])
	}
	r.backends["canary"].delayMS.Store(60)
	st = r.waitRelease("1.3", pipeline.RolledBack, "canary")
	r.backends["canary"].delayMS.Store(0)
	if !strings.Contains(st.Reason, "p95") && !strings.Contains(st.Reason, "p99") {
		t.Errorf("the slow build was rolled back for: %s", st.Reason)
	}
}

// TestJobGateOnCluster: a stage's Job gate runs as a real Job (the test
// cluster's pods complete at once); a Job that succeeds moves the release
// on, one that fails (here: no node for its pod, and a 3 s deadline) stops
// it on its stage, with the Job's own reason.
func TestJobGateOnCluster(t *testing.T) {
	c := testcluster.Get(t)
	ns := specNamespace(t, c, "jobs")
	r := bareFleet(t, c, ns)
	ctx := context.Background()
	job := func(extra string) string {
		deadline := ""
		if extra != "" {
			deadline = "\n            activeDeadlineSeconds: 3"
		}
		return `
      - job:
          apiVersion: batch/v1
          kind: Job
          spec:
            backoffLimit: 0` + deadline + `
            template:
              spec:
                restartPolicy: Never
                containers: [{name: suite, image: "registry.example.com/suite:1", args: ["$(TRACK_URL)"]` + extra + `}]`
	}
	spec := func(version, extra string) string {
		return `service: account-service
port: 8080
template: account-service
router: {replicas: 1}
tracks:
  internal:
    version: "` + version + `"
    replicas: 1
    gates:` + job(extra) + `
  canary: {version: "1.0", replicas: 1}
  production: {version: "1.0", replicas: 1}
groups: {INTERNAL: internal, FREE: free}
default: all
backends:
  internal: {internal: 100}
  free: {canary: 5, production: 95}
  all: {production: 100}
`
	}
	r.setSpec(spec("1.0", ""))
	r.startController()
	t.Cleanup(func() { r.stopCtrl() })
	p := &pipelineRig{fleetRig: r}
	p.waitRelease("", pipeline.Idle, "")

	r.setSpec(spec("1.1", ""))
	p.waitRelease("1.1", pipeline.Manual, "canary")
	name := p.state().JobName("account-service", "internal", 0)
	j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the gate's Job: %v", err)
	}
	env := map[string]string{}
	for _, e := range j.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["TRACK_URL"] != "http://account-service-internal."+ns+".svc:8080" || env["VERSION"] != "1.1" || env["TRACK"] != "internal" {
		t.Errorf("the Job's environment: %v", env)
	}

	// A failing suite on the next build: the release stops on internal.
	// (more CPU than any node has: never scheduled, past its deadline).
	r.setSpec(spec("1.2", `, resources: {requests: {cpu: "100000"}}`))
	// The new build supersedes 1.1 (waiting on canary): canary goes back.
	p.waitRelease("1.2", pipeline.Gates, "internal")
	st := p.waitRelease("1.2", pipeline.Stopped, "internal")
	if !strings.Contains(st.Reason, "failed: DeadlineExceeded") || !strings.Contains(st.Reason, "stays on internal") {
		t.Errorf("reason: %s", st.Reason)
	}
	if s := specOf(t, c, ns); s.Tracks["canary"].Version != "1.0" || s.Tracks["internal"].Version != "1.2" {
		t.Errorf("canary %s (want 1.0 back), internal %s (want 1.2 kept)", s.Tracks["canary"].Version, s.Tracks["internal"].Version)
	}

	// The Job runs as the service's gates ServiceAccount, without a token,
	// owned by the spec, with a deadline; the account has no token either.
	pod := j.Spec.Template.Spec
	if pod.ServiceAccountName != "account-service-gates" || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken ||
		j.Spec.ActiveDeadlineSeconds == nil || metav1.GetControllerOf(j) == nil || metav1.GetControllerOf(j).Name != "account-service" {
		t.Errorf("the gate's Job: account %q, token %v, deadline %v, owner %v", pod.ServiceAccountName, pod.AutomountServiceAccountToken, j.Spec.ActiveDeadlineSeconds, metav1.GetControllerOf(j))
	}
	if sa, err := c.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "account-service-gates", metav1.GetOptions{}); err != nil || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("the gates ServiceAccount: %v, %+v", err, sa)
	}

	// A Job made beforehand under the gate's (predictable) name, with the
	// controller's labels, that would pass: the gate fails, saying so.
	r.stopCtrl()
	r.setSpec(spec("1.3", `, resources: {requests: {cpu: "100000"}}`))
	r.startController()
	st = p.waitRelease("1.3", pipeline.Gates, "internal")
	name = st.JobName("account-service", "internal", 0)
	r.poll("the gate's Job", func() error {
		_, err := c.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	r.stopCtrl()
	if err := c.Client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	r.poll("the gate's Job gone", func() error {
		if _, err := c.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	impostor := j.DeepCopy()
	impostor.ObjectMeta = metav1.ObjectMeta{Name: name, Namespace: ns, Labels: j.Labels, OwnerReferences: j.OwnerReferences}
	impostor.Spec.Selector, impostor.Spec.ManualSelector = nil, nil
	delete(impostor.Spec.Template.Labels, "controller-uid")
	delete(impostor.Spec.Template.Labels, "batch.kubernetes.io/controller-uid")
	delete(impostor.Spec.Template.Labels, "job-name")
	delete(impostor.Spec.Template.Labels, "batch.kubernetes.io/job-name")
	impostor.Spec.Template.Spec.Containers[0].Args = []string{"true"}
	impostor.Status = batchv1.JobStatus{}
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, impostor, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.startController()
	st = p.waitRelease("1.3", pipeline.Stopped, "internal")
	if !strings.Contains(st.Reason, "track-controller did not make for this gate") {
		t.Errorf("the impostor Job's gate: %s", st.Reason)
	}
}

// TestGitOpsFollowOnCluster: with the spec in git (annotated gitops), the
// pipeline never edits the spec: its promotion waits as pending, trackctl
// follow makes it in the manifest, and once the manifest is synced (as
// Argo CD or Flux would) the release moves on.
func TestGitOpsFollowOnCluster(t *testing.T) {
	c := testcluster.Get(t)
	ns := specNamespace(t, c, "gitops")
	r := bareFleet(t, c, ns)
	ctx := context.Background()
	manifest := filepath.Join(t.TempDir(), "account-service.yaml")
	text := func(version string) string {
		return `apiVersion: v1
kind: ConfigMap
metadata:
  name: account-service
  labels: {trackrouter.dev/service: account-service}
  annotations: {trackrouter.dev/pipeline: gitops}
data:
  service.yaml: |
    service: account-service
    port: 8080
    template: account-service
    router: {replicas: 1}
    tracks:
      internal: {version: "` + version + `", replicas: 1, gates: [approval]}
      canary: {version: "1.0", replicas: 1, analysis: {bake: 3s, interval: 3s, lowTraffic: promote}}
      production: {version: "1.0", replicas: 1}
    groups: {INTERNAL: internal, FREE: free}
    default: all
    backends:
      internal: {internal: 100}
      free: {canary: 5, production: 95}
      all: {production: 100}
`
	}
	// sync puts the manifest in the cluster, as a GitOps tool would.
	sync := func() {
		b, err := os.ReadFile(manifest)
		if err != nil {
			t.Fatal(err)
		}
		var want corev1.ConfigMap
		if err := sigsyaml.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "account-service", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data, cm.Annotations = want.Data, want.Annotations
		if _, err := c.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(manifest, []byte(text("1.0")), 0o644); err != nil {
		t.Fatal(err)
	}
	sync()
	r.startController()
	t.Cleanup(func() {
		r.stopAll()
	})
	p := &pipelineRig{fleetRig: r}
	p.waitRelease("", pipeline.Idle, "")
	// The HAProxy pod's sidecar: the bake is measured (no traffic), so that
	// lowTraffic: promote promotes.
	haproxytest.Binary(t)
	r.asSA = c.Kubeconfig
	r.poll("HAProxy tier 1/1", func() error { return r.ready("account-service-haproxy", 1) })
	r.startSidecar(r.routerPods()[0])

	// CI deploys in git; the GitOps tool syncs.
	if code, out := p.run("deploy", "account-service", "1.1", "-f", manifest); code != ExitOK {
		t.Fatalf("deploy -f: %s", out)
	}
	sync()
	p.waitRelease("1.1", pipeline.Gates, "internal")
	p.run("approve", "account-service")
	var st pipeline.State
	p.poll("the promotion pending in git", func() error {
		if st = p.state(); st.Pending == nil {
			return fmt.Errorf("nothing pending: %s %s on %s", st.Version, st.Phase, st.Stage)
		}
		return nil
	})
	if st.Pending.Kind != pipeline.Promote || strings.Join(st.Pending.Edits, ",") != "tracks.canary.version=1.1" || st.Stage != "internal" {
		t.Errorf("pending %+v on %s", st.Pending, st.Stage)
	}
	if s := specOf(t, c, ns); s.Tracks["canary"].Version != "1.0" {
		t.Errorf("the controller edited the spec in GitOps mode: canary %s", s.Tracks["canary"].Version)
	}
	r.poll("a ReleasePending Event", func() error { return eventWith(c, ns, "ReleasePending", "trackctl follow account-service") })

	code, out := p.run("follow", "account-service", "-f", manifest)
	if code != ExitOK || !strings.Contains(out, "tracks.canary.version") || !strings.Contains(out, "git -C") {
		t.Fatalf("follow: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(manifest); !strings.Contains(string(b), `canary: {version: "1.1"`) {
		t.Errorf("the manifest after follow:\n%s", b)
	}
	sync()
	st = p.waitRelease("1.1", pipeline.Baking, "canary")
	if st.Pending != nil {
		t.Errorf("still pending: %+v", st.Pending)
	}
	if code, out := p.run("follow", "account-service", "-f", manifest); code != ExitOK || !strings.Contains(out, "nothing pending") {
		t.Errorf("follow with nothing pending: exit %d\n%s", code, out)
	}
	// The bake's verdict (no traffic, lowTraffic: promote) comes once per
	// interval; between two, the pending promotion must stay.
	p.poll("the bake's promotion pending in git", func() error {
		if st = p.state(); st.Pending == nil {
			return fmt.Errorf("pending %+v; %s %s on %s: %s", st.Pending, st.Version, st.Phase, st.Stage, st.Reason)
		}
		return nil
	})
	time.Sleep(4 * time.Second)
	if st = p.state(); st.Pending == nil || strings.Join(st.Pending.Edits, ",") != "tracks.production.version=1.1" {
		t.Fatalf("the pending promotion was lost between two judgements: %+v", st.Pending)
	}
	if code, out := p.run("follow", "account-service", "-f", manifest); code != ExitOK {
		t.Fatalf("follow: %s", out)
	}
	sync()
	p.waitRelease("1.1", pipeline.Done, "production")
}

func eventWith(c *testcluster.Cluster, ns, reason, text string) error {
	evs, err := c.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, e := range evs.Items {
		if e.Reason == reason && strings.Contains(e.Message, text) {
			return nil
		}
	}
	return fmt.Errorf("no Event %s saying %q among %d", reason, text, len(evs.Items))
}

// TestLowTrafficWaitsOnCluster: a stage whose canary gets no traffic is
// neither promoted nor rolled back at the end of its bake: it waits
// (lowTraffic: wait, the default) and status says for how many requests.
func TestLowTrafficWaitsOnCluster(t *testing.T) {
	p := lowTrafficRig(t, "wait")
	p.startSidecar(p.routerPods()[0])
	p.run("deploy", "account-service", "1.1")
	p.waitRelease("1.1", pipeline.Manual, "internal")
	if code, out := p.run("promote", "account-service", "1.1"); code != ExitOK {
		t.Fatalf("promote: %s", out)
	}
	st := p.waitRelease("1.1", pipeline.Baking, "canary")
	time.Sleep(time.Until(st.Since.Add(4 * time.Second)))
	if after := p.state(); after.Phase != pipeline.Baking || len(after.Decisions) != len(st.Decisions) {
		t.Errorf("after its bake with no traffic: %s, %d decisions (want baking, %d)", after.Phase, len(after.Decisions), len(st.Decisions))
	}
	if _, out := p.status(); !strings.Contains(strings.Join(strings.Fields(out), " "), "bake over, waiting for 100 more requests (0 of 100 served)") {
		t.Errorf("status does not say what the release waits for:\n%s", out)
	}
}

// TestUnmeasuredNotPromotedOnCluster: with lowTraffic: promote, a stage
// whose HAProxy pod's samples cannot be read is not promoted at the end
// of its bake (not measuring is not low traffic); status names the pod
// and the reason; the controller warns once, not at every look; once the
// pod is read, lowTraffic: promote promotes.
func TestUnmeasuredNotPromotedOnCluster(t *testing.T) {
	p := lowTrafficRig(t, "promote")
	pod := p.routerPods()[0]
	p.run("deploy", "account-service", "1.1")
	p.waitRelease("1.1", pipeline.Manual, "internal")
	if code, out := p.run("promote", "account-service", "1.1"); code != ExitOK {
		t.Fatalf("promote: %s", out)
	}
	st := p.waitRelease("1.1", pipeline.Baking, "canary")
	time.Sleep(time.Until(st.Since.Add(5 * time.Second)))
	after := p.state()
	if after.Phase != pipeline.Baking || after.Stage != "canary" {
		t.Fatalf("a stage never measured: %s on %s after its bake (want baking on canary): %s", after.Phase, after.Stage, after.Reason)
	}
	_, out := p.status()
	if words := strings.Join(strings.Fields(out), " "); !strings.Contains(words, "CANNOT MEASURE: pod "+pod+": no sidecar runs for pod "+pod) {
		t.Errorf("status does not name the pod it cannot measure and why:\n%s", out)
	}
	if _, detail := p.status("account-service"); !strings.Contains(detail, "last look (") {
		t.Errorf("status of the service does not show the bake's last look:\n%s", detail)
	}
	if n := strings.Count(p.logs.String(), "level=WARN msg=\"cannot read an HAProxy pod's samples"); n != 1 {
		t.Errorf("%d warnings of the failed reads over the bake's looks, want 1:\n%s", n, p.logs.String())
	}
	p.startSidecar(pod)
	p.waitRelease("1.1", pipeline.Done, "production")
	if !strings.Contains(p.logs.String(), "samples read again") {
		t.Errorf("the recovery is not logged")
	}
}

// lowTrafficRig is a service whose canary bakes for 2 s judged every
// second, needs 100 requests and gets none, with lowTraffic as given;
// one HAProxy pod (no sidecar started) and a controller, logs kept.
func lowTrafficRig(t *testing.T, lowTraffic string) *pipelineRig {
	c := testcluster.Get(t)
	haproxytest.Binary(t)
	r := bareFleet(t, c, specNamespace(t, c, "low"))
	r.asSA = c.Kubeconfig
	r.logs = &haproxytest.SyncBuffer{}
	r.setSpec(fmt.Sprintf(`service: account-service
port: 8080
template: account-service
router: {replicas: 1}
tracks:
  internal: {version: "1.0", replicas: 1}
  canary: {version: "1.0", replicas: 1, analysis: {bake: 2s, interval: 1s, minRequests: 100, lowTraffic: %s}}
  production: {version: "1.0", replicas: 1}
groups: {INTERNAL: internal, FREE: free}
default: all
backends:
  internal: {internal: 100}
  free: {canary: 5, production: 95}
  all: {production: 100}
`, lowTraffic))
	r.startController()
	t.Cleanup(func() {
		r.stopAll()
	})
	p := &pipelineRig{fleetRig: r}
	p.waitRelease("", pipeline.Idle, "")
	r.poll("HAProxy tier 1/1", func() error { return r.ready("account-service-haproxy", 1) })
	return p
}

// bareFleet is a rig on namespace ns with no controller and no sidecar
// started yet.
func bareFleet(t *testing.T, c *testcluster.Cluster, ns string) *fleetRig {
	return &fleetRig{t: t, root: t, c: c, ns: ns, client: c.Client, sidecars: map[string]func(){}, binds: map[string]string{}}
}

// setSpec replaces the spec ConfigMap's service.yaml with text.
func (r *fleetRig) setSpec(text string) {
	r.t.Helper()
	ctx := context.Background()
	cm, err := r.client.CoreV1().ConfigMaps(r.ns).Get(ctx, "account-service", metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	cm.Data[weights.DataKey] = text
	if _, err := r.client.CoreV1().ConfigMaps(r.ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		r.t.Fatal(err)
	}
}
