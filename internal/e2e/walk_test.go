package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/internal/testing/testnode"
	"github.com/trackrouter/trackrouter/weights"
)

const (
	ns      = "default"
	service = "account-service"
)

// walk is one run of TestWalk: the tools and the report.
type walk struct {
	t        *testing.T
	c        *testcluster.Cluster
	kubectl  string
	trackctl string
	report   []string
}

func (w *walk) logf(format string, args ...any) {
	w.t.Helper()
	s := fmt.Sprintf(format, args...)
	w.report = append(w.report, s)
	w.t.Log(s)
}

// run runs a command and returns its output; a failure fails the test.
func (w *walk) run(name string, args ...string) string {
	w.t.Helper()
	out, err := w.try(name, args...)
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

func (w *walk) try(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.c.Kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// poll calls check until it returns nil or timeout, then fails the test
// with what check said last.
func (w *walk) poll(what string, timeout time.Duration, check func(ctx context.Context) error) time.Duration {
	w.t.Helper()
	start := time.Now()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = check(ctx)
		return last == nil, nil
	})
	if err != nil {
		w.t.Fatalf("wait for %s: %v (last: %v)", what, err, last)
	}
	return time.Since(start)
}

// TestWalk is the walk of issue 32 on a real node, under steady traffic
// the whole time: the install as shipped, the example, each group's share,
// a weight edit, a structural edit, a healthy build through every stage, a
// bad build rolled back at the canary, the HAProxy tier rolled to a new
// image, a track pod killed, the node's DNS restarted. Every request that
// fails is counted by cause; the goal is none but the bad build's own.
func TestWalk(t *testing.T) {
	c, node := need(t)
	ctx := context.Background()
	kubectl, err := testcluster.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	w := &walk{t: t, c: c, kubectl: kubectl, trackctl: filepath.Join(t.TempDir(), "trackctl")}
	w.run("go", "build", "-o", w.trackctl, filepath.Join(env.root, "cmd", "trackctl"))
	for _, s := range env.timings {
		w.logf("%s", s)
	}
	// Said last, so that the end of a failed run's output (all CI shows)
	// names the failed steps and what the HAProxy pods logged meanwhile.
	var problems []string
	walkStart := time.Now()
	defer func() {
		if len(problems) == 0 && !t.Failed() {
			return
		}
		if env.keeper != nil {
			env.keeper.copy()
			events := routerEvents(env.keptLogs, walkStart, time.Now())
			if len(events) > 150 {
				events = append(events[:150], fmt.Sprintf("… %d more in %s", len(events)-150, env.keptLogs))
			}
			t.Log("what the HAProxy pods logged of their servers, reloads and warnings during the walk:\n  " + strings.Join(events, "\n  "))
		}
		for _, p := range problems {
			t.Error(p)
		}
	}()
	defer func() {
		t.Log("the walk's report:\n  " + strings.Join(w.report, "\n  "))
	}()

	start := time.Now()
	w.install(ctx)
	// The example, with one images: entry for its app (hashicorp/http-echo
	// is not reachable here; the echo image takes the same flags).
	overlay := t.TempDir()
	example, err := filepath.Rel(overlay, filepath.Join(env.root, "examples", "account-service"))
	if err != nil {
		t.Fatal(err)
	}
	// kustomize takes a relative path only.
	writeFile(t, filepath.Join(overlay, "kustomization.yaml"), fmt.Sprintf(`resources: [%s]
images:
  - name: hashicorp/http-echo
    newName: %s
`, example, echoImage))
	// The webhook answers once the leader has made its certificate.
	w.poll("kubectl apply -k of the example (the admission webhook ready)", 2*time.Minute, func(context.Context) error {
		_, err := w.try(kubectl, "apply", "-k", overlay)
		return err
	})
	spec := w.spec(ctx)
	w.waitServing(ctx, spec, 4*time.Minute)
	w.logf("install and example serving in %s (track-controller, 4 HAProxy pods, 20 track pods, all real)", time.Since(start).Round(time.Second))

	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s:%d/", svc.Spec.ClusterIP, spec.Port)
	// kube-proxy's rules follow the Service's endpoints by a second or so:
	// the walk starts once a fresh connection gets an answer from a track.
	w.poll("the Service's ClusterIP answering through kube-proxy", time.Minute, func(context.Context) error {
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		if a := send(client, url, ""); a.err != nil || a.status != http.StatusOK || !strings.HasPrefix(a.body, "track=") {
			return fmt.Errorf("status %d %q %v", a.status, a.body, a.err)
		}
		return nil
	})
	tr := startTraffic(url, []string{"INTERNAL", "FREE", "ENTERPRISE", ""}, 8, 40*time.Millisecond)
	var total *tally
	defer func() {
		if total == nil {
			total = tr.Stop()
		}
		w.logf("the whole walk: %s", total)
		for _, s := range total.samples {
			w.logf("  failure: %s", s)
		}
	}()
	step := func(name string, wt *tally) {
		w.logf("%s: %s", name, wt)
		if n := wt.failures(); n > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d failed requests: %v", name, n, wt.samples))
		}
	}
	checkShare := func(wt *tally, group, track string, want, tol float64) {
		got, n := wt.share(group, track)
		w.logf("  group %q: %.1f%% %s of %d (want %.0f%% ± %.0f): %s", group, got, track, n, want, tol, wt.versions(group))
		if n < 100 || got < want-tol || got > want+tol {
			problems = append(problems, fmt.Sprintf("group %q: %.1f%% to %s of %d, want %.0f%% ± %.0f", group, got, track, n, want, tol))
		}
	}

	// 1. Each group's share, as the spec says.
	time.Sleep(20 * time.Second)
	wt := tr.take()
	step("steady traffic", wt)
	checkShare(wt, "INTERNAL", "internal", 100, 0)
	checkShare(wt, "ENTERPRISE", "production", 100, 0)
	checkShare(wt, "FREE", "canary", 5, 3)
	checkShare(wt, "", "paid", 5, 3)

	// 2. A weight edit: live by the Runtime API, no reload.
	w.run(w.trackctl, "set-weight", service, "canary", "canary=50", "production=50", "-n", ns, "--reason", "e2e: more canary traffic")
	took := w.waitReports(ctx, 30*time.Second, func(r *fleet.Report) error {
		if r.Weights["canary"]["canary"] != 50 {
			return fmt.Errorf("%s: canary/canary %d", r.Pod, r.Weights["canary"]["canary"])
		}
		return nil
	})
	w.logf("weight edit canary 5 -> 50 live on every HAProxy pod %s after trackctl set-weight returned", took.Round(10*time.Millisecond))
	tr.take()
	time.Sleep(15 * time.Second)
	wt = tr.take()
	step("after the weight edit", wt)
	checkShare(wt, "FREE", "canary", 50, 8)

	// 3. A structural edit: a new backend (a group alone is a runtime map
	// edit), a reload of every HAProxy.
	stamps := w.stamps(ctx)
	w.editSpec(ctx, func(s string) string {
		s = strings.Replace(s, "  ENTERPRISE: enterprise\n", "  ENTERPRISE: enterprise\n  BETA: beta\n", 1)
		return strings.Replace(s, "  enterprise: {production: 100}\n", "  enterprise: {production: 100}\n  beta:       {canary: 50, production: 50}\n", 1)
	})
	took = w.waitReports(ctx, time.Minute, func(r *fleet.Report) error {
		if r.Stamp == stamps[r.Pod] || !r.InSync {
			return fmt.Errorf("%s: stamp %s in sync %v", r.Pod, r.Stamp, r.InSync)
		}
		return nil
	})
	w.logf("structural edit (backend beta, group BETA) reloaded on every HAProxy pod in %s", took.Round(10*time.Millisecond))
	beta := startTraffic(url, []string{"BETA"}, 2, 20*time.Millisecond)
	time.Sleep(5 * time.Second)
	bt := beta.Stop()
	step("around the reload", tr.take())
	step("group BETA after the reload", bt)
	checkShare(bt, "BETA", "canary", 50, 12)

	// 4. The pipeline: approval on internal, analysis on canary and paid.
	w.editSpec(ctx, func(s string) string {
		s = strings.Replace(s, "internal:   {version: 1.0.0, replicas: 2}", "internal:   {version: 1.0.0, replicas: 2, gates: [approval]}", 1)
		s = strings.Replace(s, "canary:     {version: 1.0, replicas: 4}", "canary:     {version: 1.0, replicas: 4, analysis: {bake: 45s, interval: 5s, minRequests: 20}}", 1)
		return strings.Replace(s, "paid:       {version: 0.2.3, replicas: 4}", "paid:       {version: 0.2.3, replicas: 4, analysis: {bake: 20s, interval: 5s, minRequests: 20}}", 1)
	})
	if s := w.spec(ctx); !pipeline.Uses(s) {
		t.Fatalf("the spec has no pipeline after the edit:\n%s", w.specText(ctx))
	}
	// The pipeline's first look at the spec is its starting point: a
	// deploy before it would be taken for where things stand, not a
	// release (seen here when trackctl deploy ran right after the edit).
	w.poll("the pipeline's first look at the spec", time.Minute, func(ctx context.Context) error {
		cm, err := w.c.Client.CoreV1().ConfigMaps(ns).Get(ctx, pipeline.ConfigMapName(service), metav1.GetOptions{})
		if err != nil {
			return err
		}
		st, _, err := pipeline.Read(cm.Data)
		if err != nil {
			return err
		}
		if st.Phase != pipeline.Idle || st.Seen["internal"] != "1.0.0" {
			return fmt.Errorf("release %s %s, seen %v", st.Version, st.Phase, st.Seen)
		}
		return nil
	})
	tr.take()

	// 5. A healthy build, internal -> canary -> paid -> production.
	start = time.Now()
	w.run(w.trackctl, "deploy", service, goodVersion, "-n", ns, "--reason", "e2e: a healthy build")
	w.waitRelease(goodVersion, pipeline.Gates, "internal", 3*time.Minute)
	w.run(w.trackctl, "approve", service, "-n", ns, "--reason", "e2e: QA ok")
	st := w.waitRelease(goodVersion, pipeline.Done, "production", 10*time.Minute)
	w.logf("healthy build %s: trackctl deploy to production in %s (with the approval): %s", goodVersion, time.Since(start).Round(time.Second), st.Reason)
	took = w.poll("the old versions cleaned up", 3*time.Minute, func(ctx context.Context) error {
		return w.onlyVersion(ctx, goodVersion)
	})
	w.logf("old versions' Deployments and pods gone %s after production", took.Round(time.Second))
	step("the healthy release", tr.take())

	// The board, as a user runs it on their own credentials: it shows
	// each rollback's evidence.
	board := w.board(ns)

	// 6. A build that fails 2% of requests: rolled back on the canary,
	// the 5xx rate over the limit on the board.
	w.run(w.trackctl, "deploy", service, badVersion, "-n", ns, "--reason", "e2e: a bad build")
	w.waitRelease(badVersion, pipeline.Gates, "internal", 3*time.Minute)
	w.run(w.trackctl, "approve", service, "-n", ns)
	st = w.waitRelease(badVersion, pipeline.RolledBack, "canary", 5*time.Minute)
	decided := time.Now()
	w.waitReports(ctx, 30*time.Second, func(r *fleet.Report) error {
		for _, b := range []string{"canary", "paid"} {
			if wgt, ok := r.Weights[b]["canary"]; ok && wgt != 0 {
				return fmt.Errorf("%s: %s/canary weight %d", r.Pod, b, wgt)
			}
		}
		return nil
	})
	tr.mu.Lock()
	firstBad := tr.firstBad["FREE"] // the canary's users
	tr.mu.Unlock()
	w.logf("bad build %s (2%% errors) rolled back on the canary: %s", badVersion, st.Reason)
	if firstBad.IsZero() {
		problems = append(problems, "no FREE request was answered by the bad build on the canary")
	} else {
		w.logf("  the canary's first answer from the bad build to the rollback live on every HAProxy pod: %s (the decision was live everywhere %s after it was recorded)",
			time.Since(firstBad).Round(100*time.Millisecond), time.Since(decided).Round(10*time.Millisecond))
	}
	if !strings.Contains(st.Reason, "canary errors") {
		problems = append(problems, "the bad build was rolled back for another reason than its errors: "+st.Reason)
	}
	w.logf("  the board: %s", board.evidence("5xx rate", badVersion))
	wt = tr.take()
	step("the bad build's release", wt)
	w.rolledBackTo(ctx, goodVersion, &problems)

	// 6b. A build that answers 30 ms later than production: rolled back on
	// the canary for its p95, the p95 over the limit on the board.
	w.run(w.trackctl, "deploy", service, slowVersion, "-n", ns, "--reason", "e2e: a slow build")
	w.waitRelease(slowVersion, pipeline.Gates, "internal", 3*time.Minute)
	w.run(w.trackctl, "approve", service, "-n", ns)
	start = time.Now()
	st = w.waitRelease(slowVersion, pipeline.RolledBack, "canary", 5*time.Minute)
	w.logf("slow build %s (+30 ms) rolled back on the canary %s after the approval: %s", slowVersion, time.Since(start).Round(time.Second), st.Reason)
	if !strings.Contains(st.Reason, "canary p95") {
		problems = append(problems, "the slow build was rolled back for another reason than its p95: "+st.Reason)
	}
	w.logf("  the board: %s", board.evidence("p95 latency", slowVersion))
	wt = tr.take()
	step("the slow build's release", wt)
	slow := wt.answeredBy(slowVersion)
	w.logf("  answers by the slow build, by group: %v", slow)
	if slow["FREE"] == 0 {
		problems = append(problems, "no FREE request was answered by the slow build on the canary: the rollback was not caused by it")
	}
	for group, n := range slow {
		if group != "INTERNAL" && group != "FREE" {
			problems = append(problems, fmt.Sprintf("the slow build answered %d requests of group %q, whose backend has no stage it ran on", n, group))
		}
	}
	w.rolledBackTo(ctx, goodVersion, &problems)

	// 7. The HAProxy tier rolls to a new router image: the controller's
	// own image changes, and with it the tier's.
	start = time.Now()
	w.run(kubectl, "-n", "trackrouter-system", "set", "image", "deployment/track-controller", "track-controller="+nextRouterImage)
	w.poll("the HAProxy tier on the new image", 5*time.Minute, func(ctx context.Context) error {
		return w.tierOn(ctx, nextRouterImage)
	})
	w.waitServing(ctx, w.spec(ctx), 2*time.Minute)
	w.logf("HAProxy tier rolled to %s in %s", nextRouterImage, time.Since(start).Round(time.Second))
	step("the HAProxy tier's roll", tr.take())

	// 8. A track pod killed: its main process SIGKILLed (the container
	// restarts), then a pod deleted (a graceful stop, and a new pod).
	pod := w.pod(ctx, "production")
	if err := node.KillContainer(ctx, pod.Status.ContainerStatuses[0].ContainerID); err != nil {
		t.Fatal(err)
	}
	w.poll("the killed container restarted and Ready", 2*time.Minute, func(ctx context.Context) error {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.ContainerStatuses[0].RestartCount == 0 || !podReady(p) {
			return fmt.Errorf("restarts %d, ready %v", p.Status.ContainerStatuses[0].RestartCount, podReady(p))
		}
		return nil
	})
	time.Sleep(5 * time.Second)
	step("a production container killed (SIGKILL), until 5 s after it is Ready again", tr.take())
	pod = w.pod(ctx, "production")
	w.run(kubectl, "-n", ns, "delete", "pod", pod.Name)
	w.waitServing(ctx, w.spec(ctx), 2*time.Minute)
	step("a production pod deleted", tr.take())

	// 9. The node's DNS restarts.
	if err := node.RestartDNS(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	step("the node's DNS restarted", tr.take())

	// 10. The node's DNS down for 40 s: HAProxy's resolvers get no answer
	// for longer than HAProxy's own 30 s hold (which took every server's
	// address away: 503 for every request); the addresses known are kept.
	node.StopDNS()
	time.Sleep(40 * time.Second)
	step("the node's DNS down for 40 s", tr.take())
	if err := node.StartDNS(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	step("the node's DNS back", tr.take())

	total = tr.Stop()
	bad := 0
	for group, n := range total.badBuild {
		bad += n
		if group != "INTERNAL" && group != "FREE" {
			problems = append(problems, fmt.Sprintf("the bad build answered %d requests of group %q, whose backend has no stage it ran on", n, group))
		}
	}
	if bad == 0 {
		problems = append(problems, "the bad build answered no request: the rollback was not caused by it")
	}
}

// rolledBackTo checks that canary, paid and production run version.
func (w *walk) rolledBackTo(ctx context.Context, version string, problems *[]string) {
	s := w.spec(ctx)
	if s.Tracks["canary"].Version != version || s.Tracks["paid"].Version != version || s.Tracks["production"].Version != version {
		*problems = append(*problems, fmt.Sprintf("after the rollback: canary %s, paid %s, production %s", s.Tracks["canary"].Version, s.Tracks["paid"].Version, s.Tracks["production"].Version))
	}
}

// boardRun is a trackctl board the walk started, on the user's
// kubeconfig, read-only.
type boardRun struct {
	w   *walk
	url string // the service's page
}

// board starts trackctl board for namespace; it is stopped, by its PID,
// when the test ends.
func (w *walk) board(namespace string) *boardRun {
	w.t.Helper()
	cmd := exec.Command(w.trackctl, "board", "-n", namespace, "--addr", "127.0.0.1:0", "--read-only")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.c.Kubeconfig)
	out, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	go io.Copy(io.Discard, out)
	// "trackctl board: http://127.0.0.1:PORT/ (namespace shop); Ctrl-C stops it"
	f := strings.Fields(line)
	if err != nil || len(f) < 3 || !strings.HasPrefix(f[2], "http://") {
		w.t.Fatalf("trackctl board said %q (%v); stderr: %s", line, err, stderr.String())
	}
	return &boardRun{w: w, url: f[2] + "service/" + namespace + "/" + service}
}

// evidence waits until the service's page shows the last rollback of
// version with measure over the limit, and says what it shows.
func (b *boardRun) evidence(measure, version string) string {
	b.w.t.Helper()
	var page string
	b.w.poll("the board showing "+version+"'s rollback with its "+measure+" over the limit", 30*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		page = string(body)
		for _, want := range []string{"decided: rollback on canary", `<tr class="bad"><th scope="row">` + measure + `</th>`, "rolled back", version} {
			if !strings.Contains(page, want) {
				return fmt.Errorf("%s: no %q", b.url, want)
			}
		}
		return nil
	})
	// The bar's numbers, as the page writes them.
	i := strings.Index(page, `<th scope="row">`+measure+`</th><td>`)
	row := page[i+len(`<th scope="row">`+measure+`</th><td>`):]
	row = row[:strings.Index(row, "</td>")]
	row = strings.NewReplacer("<br>", "; ", "<strong>", "", "</strong>", "").Replace(row)
	return measure + ": " + row
}

// install applies the install as shipped (the image is loaded under the
// name it uses) and waits until track-controller runs.
func (w *walk) install(ctx context.Context) {
	w.t.Helper()
	w.run(w.kubectl, "apply", "-k", filepath.Join(env.root, "examples", "install"))
	w.waitDeployment("trackrouter-system", "track-controller", 3*time.Minute)
}

// TestPort80: a spec whose port is 80 binds in the HAProxy tier's pod as
// the controller makes it (user 10001, every capability dropped, no
// privilege escalation, the restricted Pod Security level enforced on its
// namespace), and serves. Its one track is an address: a Service of its
// own. (It did not bind before: the capability the pod added and haproxy's
// file capability are both lost to a non-root user without privilege
// escalation; the pod now sets net.ipv4.ip_unprivileged_port_start.)
func TestPort80(t *testing.T) {
	c, _ := need(t)
	ctx := context.Background()
	kubectl, err := testcluster.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	w := &walk{t: t, c: c, kubectl: kubectl}
	w.install(ctx)
	c.Namespace(t, "web")
	w.run(kubectl, "label", "namespace", "web", "pod-security.kubernetes.io/enforce=restricted")
	manifest := filepath.Join(t.TempDir(), "web.yaml")
	writeFile(t, manifest, `apiVersion: v1
kind: ConfigMap
metadata:
  name: web
  namespace: web
  labels: {trackrouter.dev/service: web}
data:
  service.yaml: |
    service: web
    port: 80
    template: web
    router: {replicas: 1}
    tracks:
      production: {version: 1.0.0, replicas: 0, address: "web-echo.web.svc.cluster.local:8080"}
    groups: {}
    default: main
    backends:
      main: {production: 100}
---
apiVersion: v1
kind: PodTemplate
metadata: {name: web, namespace: web}
template:
  spec:
    containers:
      - {name: web, image: `+echoImage+`, imagePullPolicy: IfNotPresent, args: ["-listen=:8080", "-text=web"]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-echo, namespace: web}
spec:
  selector: {matchLabels: {app: web-echo}}
  template:
    metadata: {labels: {app: web-echo}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: echo
          image: `+echoImage+`:1.0.0
          args: ["-listen=:8080", "-text=web"]
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: web-echo, namespace: web}
spec:
  selector: {app: web-echo}
  ports: [{port: 8080}]
`)
	w.poll("kubectl apply of a spec with port 80", 2*time.Minute, func(context.Context) error {
		_, err := w.try(kubectl, "apply", "-f", manifest)
		return err
	})
	var why string
	w.poll("the port-80 HAProxy pod Ready", 3*time.Minute, func(ctx context.Context) error {
		pods, err := c.Client.CoreV1().Pods("web").List(ctx, metav1.ListOptions{LabelSelector: "app=web,tier=router"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if podReady(&p) {
				return nil
			}
		}
		why = w.podProblems(ctx, "web")
		if cm, err := c.Client.CoreV1().ConfigMaps("web").Get(ctx, fleet.StatusName("web-haproxy"), metav1.GetOptions{}); err == nil {
			why += fmt.Sprintf("; reports: %v", cm.Data)
		}
		return fmt.Errorf("no HAProxy pod Ready%s", why)
	})
	svc, err := c.Client.CoreV1().Services("web").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	w.poll("an answer on port 80", time.Minute, func(context.Context) error {
		a := send(client, "http://"+svc.Spec.ClusterIP+":80/", "")
		if a.err != nil || a.status != http.StatusOK || a.body != "web" {
			return fmt.Errorf("status %d %q %v", a.status, a.body, a.err)
		}
		return nil
	})
}

// TestHelmTakesOver: the install moves from kubectl apply -k to the Helm
// chart under traffic, as a platform team would: the kustomize install
// deleted, the chart installed with the image the HAProxy tier does not
// run now, and the tier, which runs the controller's image, rolls to it
// with nothing lost; then a weight edit goes through the chart's webhook
// and controller. It runs after TestWalk, on its service.
func TestHelmTakesOver(t *testing.T) {
	c, _ := need(t)
	ctx := context.Background()
	kubectl, err := testcluster.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	helm, err := testcluster.Helm()
	if err != nil {
		t.Fatal(err)
	}
	w := &walk{t: t, c: c, kubectl: kubectl, trackctl: filepath.Join(t.TempDir(), "trackctl")}
	w.run("go", "build", "-o", w.trackctl, filepath.Join(env.root, "cmd", "trackctl"))
	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the walk's service is not there (TestWalk failed?): %v", err)
	}
	tr := startTraffic(fmt.Sprintf("http://%s:%d/", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port), []string{"INTERNAL", "FREE", "ENTERPRISE", ""}, 8, 40*time.Millisecond)
	defer func() {
		total := tr.Stop()
		w.logf("the install's move to Helm: %s", total)
		if n := total.failures(); n > 0 {
			t.Errorf("%d failed requests: %v", n, total.samples)
		}
		t.Log("report:\n  " + strings.Join(w.report, "\n  "))
	}()
	// The chart runs the image the tier does not run now: the tier rolls.
	target := nextRouterImage
	if w.tierOn(ctx, nextRouterImage) == nil {
		target = routerImage
	}
	tag := target[strings.LastIndex(target, ":")+1:]
	start := time.Now()
	w.run(kubectl, "delete", "-k", filepath.Join(env.root, "examples", "install"), "--wait=false")
	w.run(helm, "install", "track-controller", filepath.Join(env.root, "examples", "helm", "track-controller"),
		"--kubeconfig", c.Kubeconfig, "--namespace", "trackrouter-helm", "--create-namespace", "--set", "image.tag="+tag)
	w.waitDeployment("trackrouter-helm", "track-controller", 3*time.Minute)
	w.poll("the HAProxy tier on the chart's image", 5*time.Minute, func(ctx context.Context) error {
		return w.tierOn(ctx, target)
	})
	w.waitServing(ctx, w.spec(ctx), 2*time.Minute)
	w.logf("the chart's controller running and the HAProxy tier rolled to its image in %s", time.Since(start).Round(time.Second))
	// The chart's webhook serves too: a spec edit goes through it.
	w.poll("trackctl set-weight through the chart's webhook", 2*time.Minute, func(context.Context) error {
		_, err := w.try(w.trackctl, "set-weight", service, "canary", "canary=10", "production=90", "-n", ns)
		return err
	})
	w.waitReports(ctx, 30*time.Second, func(r *fleet.Report) error {
		if r.Weights["canary"]["canary"] != 10 {
			return fmt.Errorf("%s: canary/canary %d", r.Pod, r.Weights["canary"]["canary"])
		}
		return nil
	})
}

// TestImageNotLoaded: an image the node does not have is an error that
// names it and says how to load it.
func TestImageNotLoaded(t *testing.T) {
	_, node := need(t)
	if err := node.HasImages(context.Background(), echoImage+":1.0.0"); err != nil {
		t.Fatalf("the echo image is loaded, but: %v", err)
	}
	err := node.HasImages(context.Background(), echoImage+":9.9.9")
	if err == nil || !strings.Contains(err.Error(), echoImage+":9.9.9 is not loaded") || !strings.Contains(err.Error(), "make image") {
		t.Errorf("want an error naming %s:9.9.9 and make image, got %v", echoImage, err)
	}
}

// spec reads and parses the service's spec.
func (w *walk) spec(ctx context.Context) *weights.Spec {
	w.t.Helper()
	s, err := weights.ParseService(weights.Source{File: "ConfigMap " + service}, []byte(w.specText(ctx)))
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *walk) specText(ctx context.Context) string {
	w.t.Helper()
	cm, err := w.c.Client.CoreV1().ConfigMaps(ns).Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return cm.Data["service.yaml"]
}

// editSpec edits the spec's text as a person would (an update of the
// ConfigMap), failing the test when the edit changed nothing.
func (w *walk) editSpec(ctx context.Context, edit func(string) string) {
	w.t.Helper()
	cm, err := w.c.Client.CoreV1().ConfigMaps(ns).Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	before := cm.Data["service.yaml"]
	cm.Data["service.yaml"] = edit(before)
	if cm.Data["service.yaml"] == before {
		w.t.Fatalf("the edit changed nothing in:\n%s", before)
	}
	if _, err := w.c.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

// waitDeployment waits until a Deployment has all its replicas available
// and updated.
func (w *walk) waitDeployment(namespace, name string, timeout time.Duration) {
	w.t.Helper()
	w.poll("Deployment "+namespace+"/"+name, timeout, func(ctx context.Context) error {
		d, err := w.c.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != want || d.Status.AvailableReplicas != want || d.Status.Replicas != want {
			return fmt.Errorf("%d/%d updated, %d available, %d in all%s", d.Status.UpdatedReplicas, want, d.Status.AvailableReplicas, d.Status.Replicas, w.podProblems(ctx, namespace))
		}
		return nil
	})
}

// podProblems says why pods in namespace are not running, for a timeout's
// message: a pull, a crash, a pending schedule.
func (w *walk) podProblems(ctx context.Context, namespace string) string {
	pods, err := w.c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	var out []string
	for _, p := range pods.Items {
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Waiting != nil && s.State.Waiting.Reason != "ContainerCreating" {
				out = append(out, fmt.Sprintf("%s: %s %s", p.Name, s.State.Waiting.Reason, s.State.Waiting.Message))
			}
		}
		if p.Status.Phase == corev1.PodPending && len(p.Status.ContainerStatuses) == 0 {
			for _, c := range p.Status.Conditions {
				if c.Status != corev1.ConditionTrue && c.Message != "" {
					out = append(out, fmt.Sprintf("%s: %s", p.Name, c.Message))
				}
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	if len(out) > 5 {
		out = out[:5]
	}
	return "; " + strings.Join(out, "; ")
}

// waitServing waits until every Deployment of the service is available
// and every HAProxy pod, its HAProxy past its first health checks,
// reports the latest spec in sync with every server up. A track's pods
// Ready is not yet HAProxy's checks passing: HAProxy starts every server
// up but one failed check from down, and a first check sent before
// kube-proxy had the track's ClusterIP in its rules times out (2 s) and
// takes the server down for its rise count (2 checks, 4 s). CI saw it
// twice: 503 "No server is available" for the first 0.5 s of traffic when
// the walk began on Deployments alone, and FREE 15% canary when it began
// on "no server down" while the first checks were still in flight.
func (w *walk) waitServing(ctx context.Context, s *weights.Spec, timeout time.Duration) {
	w.t.Helper()
	w.poll("the service's Deployments", timeout, func(ctx context.Context) error {
		deps, err := w.c.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: weights.ServiceLabel + "=" + service})
		if err != nil {
			return err
		}
		if len(deps.Items) < len(s.Tracks)+1 {
			return fmt.Errorf("%d Deployments%s", len(deps.Items), w.podProblems(ctx, ns))
		}
		for _, d := range deps.Items {
			want := *d.Spec.Replicas
			if d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas != want || d.Status.UpdatedReplicas != want || d.Status.Replicas != want {
				return fmt.Errorf("%s: %d/%d available%s", d.Name, d.Status.AvailableReplicas, want, w.podProblems(ctx, ns))
			}
		}
		return nil
	})
	w.poll("every HAProxy past its first health checks", timeout, func(ctx context.Context) error {
		pods, err := w.c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + service + ",tier=router"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || !podReady(&p) {
				continue
			}
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Running == nil {
					return fmt.Errorf("%s: %s not running", p.Name, c.Name)
				}
				// The first check's answer within inter + timeout check
				// (4 s), a server it took down up again after rise (4 s).
				if age := time.Since(c.State.Running.StartedAt.Time); age < firstChecks {
					return fmt.Errorf("%s: HAProxy started %s ago", p.Name, age.Round(100*time.Millisecond))
				}
			}
		}
		return nil
	})
	w.waitReports(ctx, timeout, func(r *fleet.Report) error {
		if !r.InSync || r.HAProxy != "running" {
			return fmt.Errorf("%s: in sync %v, haproxy %s", r.Pod, r.InSync, r.HAProxy)
		}
		if len(r.Down) > 0 {
			return fmt.Errorf("%s: servers taking no traffic: %v", r.Pod, r.Down)
		}
		return nil
	})
}

// waitReports waits until every running HAProxy pod has a report that
// passes check, and returns how long that took.
func (w *walk) waitReports(ctx context.Context, timeout time.Duration, check func(*fleet.Report) error) time.Duration {
	w.t.Helper()
	return w.poll("the HAProxy pods' reports", timeout, func(ctx context.Context) error {
		reports, err := w.reports(ctx)
		if err != nil {
			return err
		}
		pods, err := w.c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + service + ",tier=router"})
		if err != nil {
			return err
		}
		n := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || !podReady(&p) {
				continue
			}
			n++
			r := reports[p.Name]
			if r == nil {
				return fmt.Errorf("%s: no report", p.Name)
			}
			if err := check(r); err != nil {
				return err
			}
		}
		if n == 0 {
			return fmt.Errorf("no HAProxy pod Ready%s", w.podProblems(ctx, ns))
		}
		return nil
	})
}

func (w *walk) reports(ctx context.Context) (map[string]*fleet.Report, error) {
	cm, err := w.c.Client.CoreV1().ConfigMaps(ns).Get(ctx, fleet.StatusName(service+"-haproxy"), metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	reports, _ := fleet.Parse(cm.Data)
	return reports, nil
}

// stamps are the config stamps each HAProxy pod runs.
func (w *walk) stamps(ctx context.Context) map[string]string {
	w.t.Helper()
	reports, err := w.reports(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	s := make(map[string]string)
	for pod, r := range reports {
		s[pod] = r.Stamp
	}
	return s
}

// waitRelease waits until the release of version is in phase on stage.
func (w *walk) waitRelease(version string, phase pipeline.Phase, stage string, timeout time.Duration) pipeline.State {
	w.t.Helper()
	var (
		st    pipeline.State
		ended error
	)
	w.poll(fmt.Sprintf("release %s %s on %s", version, phase, stage), timeout, func(ctx context.Context) error {
		cm, err := w.c.Client.CoreV1().ConfigMaps(ns).Get(ctx, pipeline.ConfigMapName(service), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if st, _, err = pipeline.Read(cm.Data); err != nil {
			return err
		}
		if st.Version != version || st.Phase != phase || st.Stage != stage {
			var ds []string
			for _, d := range st.Decisions {
				ds = append(ds, fmt.Sprintf("%s %s %s: %s", d.Kind, d.Version, d.Stage, d.Reason))
			}
			err := fmt.Errorf("release %s %s on %s (%s); decisions: %s", st.Version, st.Phase, st.Stage, st.Reason, strings.Join(ds, " | "))
			if st.Version == version && (st.Phase == pipeline.Done || st.Phase == pipeline.RolledBack) {
				ended = err // it ended elsewhere: no use waiting
				return nil
			}
			return err
		}
		return nil
	})
	if ended != nil {
		w.t.Fatalf("release %s ended, not %s on %s: %v", version, phase, stage, ended)
	}
	return st
}

// onlyVersion says whether every track's Deployment and pods run version
// only (the old versions cleaned up).
func (w *walk) onlyVersion(ctx context.Context, version string) error {
	deps, err := w.c.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + service + ",tier!=router"})
	if err != nil {
		return err
	}
	for _, d := range deps.Items {
		if d.Labels["version"] != version {
			return fmt.Errorf("Deployment %s runs %s", d.Name, d.Labels["version"])
		}
	}
	pods, err := w.c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + service + ",tier!=router"})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if p.Labels["version"] != version {
			return fmt.Errorf("pod %s runs %s", p.Name, p.Labels["version"])
		}
	}
	return nil
}

// tierOn says whether every HAProxy pod runs image, Ready, none other left.
func (w *walk) tierOn(ctx context.Context, image string) error {
	pods, err := w.c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + service + ",tier=router"})
	if err != nil {
		return err
	}
	n := 0
	for _, p := range pods.Items {
		if p.Spec.Containers[0].Image != image {
			return fmt.Errorf("%s runs %s", p.Name, p.Spec.Containers[0].Image)
		}
		if !podReady(&p) {
			return fmt.Errorf("%s not Ready", p.Name)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no HAProxy pod")
	}
	return nil
}

// pod returns a Ready pod of track.
func (w *walk) pod(ctx context.Context, track string) *corev1.Pod {
	w.t.Helper()
	pods, err := w.c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + service + ",track=" + track})
	if err != nil {
		w.t.Fatal(err)
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; podReady(p) && p.DeletionTimestamp == nil && len(p.Status.ContainerStatuses) > 0 {
			return p
		}
	}
	w.t.Fatalf("no Ready pod of track %s", track)
	return nil
}

// firstChecks is how long a new HAProxy takes to have judged every server
// by its checks (inter 2s, timeout check 2s, rise 2), with a margin.
const firstChecks = 10 * time.Second

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecondNodeRefused: a second node started on the machine while this
// one runs is refused, naming the bridge, and changes nothing: before, its
// error path cleaned up the machine's node state (the bridge, the pods'
// cgroups and network namespaces, kube-proxy's chains) and took the running
// node down with it. The running node's pods still answer through their
// Service afterwards.
func TestSecondNodeRefused(t *testing.T) {
	c, _ := need(t)
	ctx := context.Background()
	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the walk's service is not there (TestWalk failed?): %v", err)
	}
	nbin, err := testcluster.NodeBinaries(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = testnode.New(testnode.Options{Dir: t.TempDir(), BinDir: nbin})
	if err == nil || !strings.Contains(err.Error(), "the bridge "+testnode.Bridge+" exists") {
		t.Fatalf("a second node: want an error naming the bridge, got %v", err)
	}
	url := fmt.Sprintf("http://%s:%d/", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
	tr := startTraffic(url, []string{"INTERNAL", "ENTERPRISE"}, 4, 20*time.Millisecond)
	time.Sleep(3 * time.Second)
	total := tr.Stop()
	if n := total.failures(); n > 0 || total.sent < 100 {
		t.Errorf("after the refused second node: %s: %v", total, total.samples)
	}
}
