package trackctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/trackrouter/trackrouter/controller"
	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/testing/alerttest"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/router"
	"github.com/trackrouter/trackrouter/weights"
)

func TestMain(m *testing.M) { os.Exit(testcluster.Main(m)) }

var fleetNS atomic.Int64

// fleetRig is the account-service example deployed by track-controller on
// the test cluster, with a real sidecar and HAProxy on this machine for
// each pod of its HAProxy tier, each running as the tier's ServiceAccount
// and reporting for its pod.
type fleetRig struct {
	t        testing.TB // the running (sub)test, for failures
	root     testing.TB // owns the sidecars' directories: they outlive subtests
	c        *testcluster.Cluster
	ns       string
	client   kubernetes.Interface
	sidecars map[string]func() // pod -> stop
	binds    map[string]string // pod -> its HAProxy's frontend address
	// samples: pod -> its sidecar's /samples URL (kwok's pods are not
	// real: the controller reads them where the test runs them).
	samples sync.Map
	// logs, when set, receives the controller's and sidecars' logs.
	logs     *haproxytest.SyncBuffer
	stopCtrl func()
	asSA     string // kubeconfig of the tier's ServiceAccount
}

func newFleet(tb testing.TB) *fleetRig {
	tb.Helper()
	haproxytest.Binary(tb)
	c := testcluster.Get(tb)
	ns := specNamespace(tb, c, "fleet")
	r := &fleetRig{t: tb, root: tb, c: c, ns: ns, client: c.Client, sidecars: map[string]func(){}, binds: map[string]string{}}
	r.startController()
	r.poll("HAProxy tier 4/4", func() error { return r.ready("account-service-haproxy", 4) })
	for track, n := range map[string]int32{"internal": 2, "canary": 4, "paid": 4, "production": 10} {
		version := map[string]string{"internal": "1.0.0", "canary": "1.0", "paid": "0.2.3", "production": "0.2.3"}[track]
		r.poll("track "+track, func() error { return r.ready("account-service-"+track+"-"+version, n) })
	}
	// The sidecars run as the tier's ServiceAccount: the Role under test.
	kc, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = "system:serviceaccount:" + ns + ":account-service-haproxy"
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	r.asSA = filepath.Join(tb.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, r.asSA); err != nil {
		tb.Fatal(err)
	}
	for _, pod := range r.routerPods() {
		r.startSidecar(pod)
	}
	tb.Cleanup(func() {
		r.stopAll()
	})
	return r
}

func (r *fleetRig) poll(what string, check func() error) {
	r.t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		last = check()
		return last == nil, nil
	})
	if err != nil {
		r.t.Fatalf("%s: %v", what, last)
	}
}

func (r *fleetRig) ready(name string, n int32) error {
	d, err := r.client.AppsV1().Deployments(r.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if d.Status.ReadyReplicas != n || d.Status.UpdatedReplicas != n {
		return fmt.Errorf("%s: %d ready, %d updated, want %d", name, d.Status.ReadyReplicas, d.Status.UpdatedReplicas, n)
	}
	return nil
}

func (r *fleetRig) startController() { r.startControllerWith(controller.Config{}) }

// startControllerWith runs track-controller for the rig's namespace, with
// cfg's health and alert settings.
func (r *fleetRig) startControllerWith(cfg controller.Config) {
	cfg.Kubeconfig, cfg.Namespace, cfg.RouterImage, cfg.Workers = r.c.Kubeconfig, r.ns, "trackrouter:test", 2
	if cfg.SamplesURL == nil {
		cfg.SamplesURL = r.samplesURL
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- controller.Execute(ctx, cfg, r.log())
	}()
	var once sync.Once
	r.stopCtrl = func() { // a second call (a test's, then its cleanup's) waits for nothing
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

// stopAll stops the rig's sidecars, then its controller.
func (r *fleetRig) stopAll() {
	for _, stop := range r.sidecars {
		stop()
	}
	r.stopCtrl()
}

// samplesURL is where the test runs pod's sidecar.
func (r *fleetRig) samplesURL(pod *corev1.Pod) (string, error) {
	if u, ok := r.samples.Load(pod.Name); ok {
		return u.(string), nil
	}
	return "", fmt.Errorf("no sidecar runs for pod %s in this test", pod.Name)
}

func (r *fleetRig) routerPods() []string {
	pods, err := r.client.CoreV1().Pods(r.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=account-service,tier=router"})
	if err != nil {
		r.t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	return names
}

// startSidecar runs trackrouter for pod, with its own HAProxy.
func (r *fleetRig) startSidecar(pod string) {
	dir := r.root.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := router.Config{
		ConfigMap: r.ns + "/account-service", Kubeconfig: r.asSA,
		HAProxyConfig: filepath.Join(dir, "haproxy.cfg"), MasterSocket: filepath.Join(dir, "master.sock"),
		GroupsMap: filepath.Join(dir, "groups.map"),
		Bind:      fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(r.root)), RunHAProxy: true, HAProxyBin: haproxytest.Binary(r.root),
		MetricsAddr:   fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(r.root)), // and /samples, named in the report
		ClusterDomain: "cluster.local", MinInterval: 10 * time.Millisecond, StopGrace: time.Second,
		ReportConfigMap: fleet.StatusName("account-service-haproxy"), PodName: pod, ReportRefresh: 500 * time.Millisecond,
	}
	r.binds[pod] = cfg.Bind
	r.samples.Store(pod, "http://"+cfg.MetricsAddr+"/samples")
	go func() { done <- router.Run(ctx, cfg, r.log()) }()
	r.sidecars[pod] = func() {
		cancel()
		<-done
		delete(r.sidecars, pod)
		r.samples.Delete(pod)
	}
}

// log is the rig's logs when it keeps them, else quietLog.
func (r *fleetRig) log() *slog.Logger {
	if r.logs != nil {
		return slog.New(slog.NewTextHandler(r.logs, nil))
	}
	return quietLog()
}

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// status runs trackctl status against the rig's namespace.
func (r *fleetRig) status(args ...string) (int, string) {
	var out, errOut bytes.Buffer
	e := &env{name: "trackctl", stdout: &out, stderr: &errOut}
	root := e.rootCommand()
	root.SetArgs(append([]string{"status", "--kubeconfig", r.c.Kubeconfig, "-n", r.ns}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	code := ExitOK
	if _, err := root.ExecuteC(); err != nil {
		code = ExitProblem
		if _, ok := err.(usageError); ok {
			code = ExitUsage
		}
		if err != errProblems {
			fmt.Fprintln(&errOut, err)
		}
	}
	return code, out.String() + errOut.String()
}

// health is the service's health as status -o json says it.
func (r *fleetRig) health() *fleet.Health {
	r.t.Helper()
	_, out := r.status("-o", "json")
	var hs []*fleet.Health
	if err := json.Unmarshal([]byte(out), &hs); err != nil || len(hs) != 1 {
		if strings.Contains(out, "connection refused") || strings.Contains(out, "EOF") {
			return &fleet.Health{Problems: []string{out}}
		}
		r.t.Fatalf("status -o json: %v\n%s", err, out)
	}
	return hs[0]
}

// waitProblem waits until status names a problem containing want, and
// checks the exit code and the table say so too.
func (r *fleetRig) waitProblem(want string) {
	r.t.Helper()
	r.poll("problem "+want, func() error {
		h := r.health()
		for _, p := range h.Problems {
			if strings.Contains(p, want) {
				return nil
			}
		}
		return fmt.Errorf("problems %q", h.Problems)
	})
	code, out := r.status()
	if code != ExitProblem || !strings.Contains(out, "FAILING") || !strings.Contains(out, want) {
		r.t.Errorf("status with %q: exit %d, want 1:\n%s", want, code, out)
	}
}

func (r *fleetRig) waitHealthy() {
	r.t.Helper()
	r.poll("healthy", func() error {
		if h := r.health(); !h.Healthy {
			return fmt.Errorf("problems %q", h.Problems)
		}
		return nil
	})
	if code, out := r.status(); code != ExitOK {
		r.t.Errorf("healthy: exit %d:\n%s", code, out)
	}
}

func (r *fleetRig) editSpec(old, new string) {
	r.t.Helper()
	ctx := context.Background()
	cm, err := r.client.CoreV1().ConfigMaps(r.ns).Get(ctx, "account-service", metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	if !strings.Contains(cm.Data[weights.DataKey], old) {
		r.t.Fatalf("spec has no %q", old)
	}
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], old, new, 1)
	if _, err := r.client.CoreV1().ConfigMaps(r.ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *fleetRig) scale(name string, n int32) {
	r.t.Helper()
	ctx := context.Background()
	s, err := r.client.AppsV1().Deployments(r.ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	s.Spec.Replicas = n
	if _, err := r.client.AppsV1().Deployments(r.ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{}); err != nil {
		r.t.Fatal(err)
	}
}

// TestStatusFindsEachFailure: a converged account-service, with its four
// HAProxy pods' sidecars reporting, is healthy (exit 0); then each failure
// on its own is detected, named, and makes the exit code 1, and the
// service is healthy again once it is repaired.
func TestStatusFindsEachFailure(t *testing.T) {
	r := newFleet(t)
	r.waitHealthy()
	code, out := r.status()
	if !strings.Contains(out, "account-service  ok") || !strings.Contains(out, "4/4      4/4") {
		t.Errorf("healthy table: exit %d:\n%s", code, out)
	}
	// The controller would repair what follows: stop it.
	r.stopCtrl()
	r.stopCtrl = func() {}
	ctx := context.Background()

	t.Run("a track with 1 endpoint", func(t *testing.T) {
		r.t = t
		r.scale("account-service-canary-1.0", 1)
		r.waitProblem("canary: 1 ready endpoint, want at least 2")
		r.scale("account-service-canary-1.0", 4)
		r.waitHealthy()
	})
	t.Run("HAProxy 3 of 4 ready", func(t *testing.T) {
		r.t = t
		// A rollout that cannot place its pod (no node matches) takes one
		// old pod down and waits: 3 of 4 ready, as a stuck rollout does.
		d, err := r.client.AppsV1().Deployments(r.ns).Get(ctx, "account-service-haproxy", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := d.DeepCopy()
		d.Spec.Template.Spec.NodeSelector = map[string]string{"no-such-node": "x"}
		if _, err := r.client.AppsV1().Deployments(r.ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		r.waitProblem("HAProxy tier: 3 of 4 pods ready")
		d, _ = r.client.AppsV1().Deployments(r.ns).Get(ctx, "account-service-haproxy", metav1.GetOptions{})
		d.Spec.Template.Spec = before.Spec.Template.Spec
		if _, err := r.client.AppsV1().Deployments(r.ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The rollback makes new pods: give each its sidecar.
		r.poll("HAProxy tier back to 4/4", func() error { return r.ready("account-service-haproxy", 4) })
		r.poll("4 HAProxy pods", func() error {
			if n := len(r.routerPods()); n != 4 {
				return fmt.Errorf("%d pods", n)
			}
			return nil
		})
		for _, pod := range r.routerPods() {
			if r.sidecars[pod] == nil {
				r.startSidecar(pod)
			}
		}
		r.waitHealthy()
	})
	t.Run("a leftover old version", func(t *testing.T) {
		r.t = t
		labels := map[string]string{"app": "account-service", "tier": "service", "track": "canary", "version": "0.2.1"}
		old := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "account-service-canary-0.2.1", Namespace: r.ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "account-service", Image: "hashicorp/http-echo:0.2.1"}}}}}}
		if _, err := r.client.AppsV1().Deployments(r.ns).Create(ctx, old, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r.waitProblem("leftover Deployment account-service-canary-0.2.1 (track canary, version 0.2.1")
		if _, out := r.status("account-service"); !strings.Contains(out, "(leftover)") {
			t.Errorf("the detail view does not show the leftover:\n%s", out)
		}
		if err := r.client.AppsV1().Deployments(r.ns).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		r.waitHealthy()
	})
	t.Run("an HAProxy pod on an old spec", func(t *testing.T) {
		r.t = t
		pods := r.routerPods()
		stopped := pods[0]
		r.sidecars[stopped]()
		r.editSpec("{canary: 5, production: 95}", "{canary: 10, production: 90}")
		r.waitProblem("HAProxy pod " + stopped + " runs an older spec")
		// The problem shows as soon as one pod reports the new spec; the
		// other two report within their refresh.
		r.poll("3 pods on the current spec, 10 live on 3 and 5 on 1", func() error {
			h := r.health()
			if h.HAProxy.OnCurrentSpec != 3 {
				return fmt.Errorf("on the current spec: %d, want 3", h.HAProxy.OnCurrentSpec)
			}
			if len(h.Backends) == 0 || len(h.Backends[0].Servers) == 0 || h.Backends[0].Name != "canary" {
				return fmt.Errorf("backends %+v, want canary first", h.Backends)
			}
			if live := h.Backends[0].Servers[0].Live; live[10] != 3 || live[5] != 1 {
				return fmt.Errorf("live canary weights: %v, want 10 on 3 pods and 5 on 1", live)
			}
			return nil
		})
		_, out := r.status("account-service")
		if !strings.Contains(out, "5 on 1 pod, 10 on 3 pods") {
			t.Errorf("detail view without the live weights:\n%s", out)
		}
		r.startSidecar(stopped)
		r.waitHealthy()
	})
	t.Run("the status ConfigMap deleted, and garbage in it", func(t *testing.T) {
		r.t = t
		name := fleet.StatusName("account-service-haproxy")
		// A controller (the main one is stopped here) creates it again,
		// and every sidecar writes its report again.
		r.startControllerWith(controller.Config{HealthInterval: 200 * time.Millisecond})
		if err := r.client.CoreV1().ConfigMaps(r.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		r.waitHealthy()
		r.stopCtrl()
		// Garbage, while no controller prunes it: named, hiding nothing.
		patch := []byte(`{"data":{"ghost":"oops"}}`)
		if _, err := r.client.CoreV1().ConfigMaps(r.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		r.waitProblem("unreadable report under the key ghost")
		if h := r.health(); h.HAProxy.OnCurrentSpec != 4 {
			t.Errorf("garbage hid the reports: %d of 4 on the current spec", h.HAProxy.OnCurrentSpec)
		}
		// The controller removes garbage under no pod's name.
		r.startControllerWith(controller.Config{HealthInterval: 200 * time.Millisecond})
		r.waitHealthy()
		r.stopCtrl()
		r.stopCtrl = func() {}
	})
	t.Run("an invalid spec", func(t *testing.T) {
		r.t = t
		r.editSpec("{canary: 10, production: 90}", "{canary: 300, production: 90}")
		r.waitProblem("invalid spec: configmap/" + r.ns + "/account-service:")
		if h := r.health(); !strings.Contains(h.SpecError, "weight 300 is out of range") {
			t.Errorf("spec error %q", h.SpecError)
		}
		r.editSpec("{canary: 300, production: 90}", "{canary: 5, production: 95}")
		r.waitHealthy()
	})
}

// TestStatusFleetConvergence: after a weight edit, status shows all four
// HAProxy pods on the new spec with the new weights live.
func TestStatusFleetConvergence(t *testing.T) {
	r := newFleet(t)
	r.waitHealthy()
	r.editSpec("{paid: 5, production: 95}", "{paid: 20, production: 80}")
	r.poll("4 pods on the new spec, paid 20 live", func() error { return fleetOnSpec(r, "paid", "paid", 20) })
	if code, out := r.status(); code != ExitOK {
		t.Errorf("after the edit: exit %d\n%s", code, out)
	}
}

// fleetOnSpec says whether every HAProxy pod runs the spec ConfigMap's
// current resourceVersion with weight w live on track in backend.
func fleetOnSpec(r *fleetRig, backend, track string, w int) error {
	objs, err := Collect(context.Background(), r.client, r.ns, nil)
	if err != nil {
		return err
	}
	hs := fleet.Evaluate(objs, fleet.Options{})
	if len(hs) != 1 {
		return fmt.Errorf("%d services", len(hs))
	}
	h := hs[0]
	if h.HAProxy.OnCurrentSpec != 4 || len(h.HAProxy.Pods) != 4 {
		return fmt.Errorf("%d of %d pods on the current spec", h.HAProxy.OnCurrentSpec, len(h.HAProxy.Pods))
	}
	for _, b := range h.Backends {
		for _, s := range b.Servers {
			if b.Name == backend && s.Track == track && s.Live[w] != 4 {
				return fmt.Errorf("live %v", s.Live)
			}
		}
	}
	return nil
}

// TestAlertsOnTheCluster: track-controller, watching the fleet, sends
// exactly one message when account-service becomes unhealthy (a leftover
// old version) and one when it recovers, to a webhook and by email over
// STARTTLS with auth; its metrics say the same.
func TestAlertsOnTheCluster(t *testing.T) {
	r := newFleet(t)
	r.waitHealthy()
	hook := alerttest.NewWebhook(t)
	mail := alerttest.NewSMTP(t)
	r.stopCtrl()
	metrics := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	r.startControllerWith(controller.Config{HealthInterval: 100 * time.Millisecond, MetricsAddr: metrics, Alerts: controller.AlertConfig{
		After: time.Second, WebhookURL: hook.URL, SMTPAddr: mail.Addr, SMTPFrom: "tc@example.com", SMTPTo: []string{"ops@example.com"},
		SMTPUsername: "alerts", SMTPPassword: "secret", SMTPCAFile: mail.CAFile}})
	r.poll("metrics: healthy", func() error {
		return metricIs(metrics, `trackcontroller_service_healthy{namespace="`+r.ns+`",service="account-service"} 1`)
	})
	r.poll("metrics: 4 pods on the current spec", func() error {
		return metricIs(metrics, `trackcontroller_haproxy_pods_on_current_spec{namespace="`+r.ns+`",service="account-service"} 4`)
	})
	r.poll("metrics: canary endpoints", func() error {
		return metricIs(metrics, `trackcontroller_track_ready_endpoints{namespace="`+r.ns+`",service="account-service",track="canary"} 4`)
	})

	ctx := context.Background()
	labels := map[string]string{"app": "account-service", "tier": "service", "track": "canary", "version": "0.2.1"}
	old := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "account-service-canary-0.2.1", Namespace: r.ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "account-service", Image: "hashicorp/http-echo:0.2.1"}}}}}}
	if _, err := r.client.AppsV1().Deployments(r.ns).Create(ctx, old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.poll("one alert", func() error {
		if n, m := len(hook.Texts()), len(mail.Mails()); n != 1 || m != 1 {
			return fmt.Errorf("%d webhook messages, %d mails", n, m)
		}
		return nil
	})
	if text := hook.Texts()[0]; !strings.Contains(text, r.ns+"/account-service is unhealthy since") || !strings.Contains(text, "leftover Deployment account-service-canary-0.2.1") {
		t.Errorf("alert: %s", text)
	}
	if m := mail.Mails()[0]; !m.TLS || m.Username != "alerts" || !strings.Contains(m.Data, "leftover Deployment") {
		t.Errorf("mail: TLS %v, user %q:\n%s", m.TLS, m.Username, m.Data)
	}
	r.poll("metrics: unhealthy", func() error {
		return metricIs(metrics, `trackcontroller_service_healthy{namespace="`+r.ns+`",service="account-service"} 0`)
	})
	if err := r.client.AppsV1().Deployments(r.ns).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.poll("the recovery", func() error {
		if n, m := len(hook.Texts()), len(mail.Mails()); n != 2 || m != 2 {
			return fmt.Errorf("%d webhook messages, %d mails", n, m)
		}
		return nil
	})
	if text := hook.Texts()[1]; !strings.Contains(text, "is healthy again since") {
		t.Errorf("recovery: %s", text)
	}
	time.Sleep(2 * time.Second) // three more --alert-after periods: nothing else may come
	if n, m := len(hook.Texts()), len(mail.Mails()); n != 2 || m != 2 {
		t.Errorf("after the recovery: %d webhook messages, %d mails; want 2 and 2", n, m)
	}
}

// metricIs checks that the metrics at addr have the line want.
func metricIs(addr, want string) error {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), want+"\n") {
		return fmt.Errorf("no line %q", want)
	}
	return nil
}
