package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/trackrouter/trackrouter/controller/releases"
	"github.com/trackrouter/trackrouter/examples"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

func TestMain(m *testing.M) {
	// Deployment names carry the version (1.0): the API server warns
	// about dots on every write. Known and intended; keep test output readable.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	os.Exit(testcluster.Main(m))
}

var nsCounter atomic.Int32

// setup creates a namespace with the account-service example (ConfigMap and
// PodTemplate) and returns a client and the namespace.
func setup(t *testing.T) (kubernetes.Interface, string, *corev1.ConfigMap) {
	t.Helper()
	c := testcluster.Get(t)
	ctx := context.Background()
	ns := fmt.Sprintf("ctrl-%d", nsCounter.Add(1))
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "default ServiceAccount", func() error {
		_, err := c.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	cm, tmpl, err := examples.AccountServiceObjects(ns)
	if err != nil {
		t.Fatal(err)
	}
	if cm, err = c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PodTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.Client, ns, cm
}

// start runs a controller for one namespace until the test ends.
func start(t *testing.T, client kubernetes.Interface, ns string) *Controller {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctrl, factories := newController(client, ns, time.Minute, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { factories.Start(ctx.Done()); ctrl.Run(ctx, 2); factories.Shutdown(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ctrl
}

func poll(t *testing.T, what string, check func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		last = check()
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: %v (last: %v)", what, err, last)
	}
}

func readyDeployment(client kubernetes.Interface, ns, name string, replicas int32) func() error {
	return func() error {
		d, err := client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !releases.Available(d) || d.Status.ReadyReplicas != replicas {
			return fmt.Errorf("%s: %d/%d ready", name, d.Status.ReadyReplicas, replicas)
		}
		return nil
	}
}

func readyEndpoints(client kubernetes.Interface, ns, service string) (int, error) {
	slices, err := client.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

var trackReplicas = map[string]int32{"internal": 2, "canary": 4, "paid": 4, "production": 10}
var trackVersions = map[string]string{"internal": "1.0.0", "canary": "1.0", "paid": "0.2.3", "production": "0.2.3"}

func converge(t *testing.T, client kubernetes.Interface, ns string) {
	t.Helper()
	for track, n := range trackReplicas {
		poll(t, "track "+track, readyDeployment(client, ns, "account-service-"+track+"-"+trackVersions[track], n))
		poll(t, "endpoints of "+track, func() error {
			got, err := readyEndpoints(client, ns, "account-service-"+track)
			if err == nil && got != int(n) {
				err = fmt.Errorf("%d ready endpoints, want %d", got, n)
			}
			return err
		})
	}
	poll(t, "HAProxy tier", readyDeployment(client, ns, "account-service-haproxy", 4))
}

func TestAccountServiceConverges(t *testing.T) {
	client, ns, _ := setup(t)
	start(t, client, ns)
	converge(t, client, ns)
	ctx := context.Background()

	svcs, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range svcs.Items {
		names = append(names, s.Name)
	}
	want := "account-service account-service-canary account-service-internal account-service-paid account-service-production"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("Services: got %s, want %s", got, want)
	}
	canary, err := client.AppsV1().Deployments(ns).Get(ctx, "account-service-canary-1.0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := canary.Spec.Template.Spec.Containers[0].Image; img != "hashicorp/http-echo:1.0" {
		t.Errorf("canary image: got %s", img)
	}
	for k, v := range map[string]string{"app": "account-service", "tier": "service", "track": "canary", "version": "1.0"} {
		if canary.Spec.Template.Labels[k] != v {
			t.Errorf("canary pod label %s: got %q, want %q", k, canary.Spec.Template.Labels[k], v)
		}
	}
	svc, err := client.CoreV1().Services(ns).Get(ctx, "account-service-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, hasVersion := svc.Spec.Selector["version"]; hasVersion || svc.Spec.Selector["track"] != "canary" || svc.Spec.Ports[0].Port != 8080 {
		t.Errorf("canary Service: selector %v, ports %v", svc.Spec.Selector, svc.Spec.Ports)
	}
	role, err := client.RbacV1().Roles(ns).Get(ctx, "account-service-haproxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rn := role.Rules[0].ResourceNames; len(rn) != 1 || rn[0] != "account-service" {
		t.Errorf("Role must name only the spec ConfigMap, got %v", role.Rules[0])
	}
}

// TestVersionBumpBlueGreen bumps canary's version: the new Deployment comes
// up, the old one goes, and the canary Service never has zero endpoints.
func TestVersionBumpBlueGreen(t *testing.T) {
	client, ns, cm := setup(t)
	start(t, client, ns)
	converge(t, client, ns)
	ctx := context.Background()

	// Watch every change of the canary Service's EndpointSlices and record
	// the fewest ready endpoints ever seen.
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=account-service-canary"
		}))
	inf := factory.Discovery().V1().EndpointSlices().Informer()
	var changes, fewest atomic.Int32
	fewest.Store(1 << 20)
	count := func(any) {
		n := 0
		for _, obj := range inf.GetStore().List() {
			for _, ep := range obj.(*discoveryv1.EndpointSlice).Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					n++
				}
			}
		}
		changes.Add(1)
		if int32(n) < fewest.Load() {
			fewest.Store(int32(n))
		}
	}
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: count, UpdateFunc: func(_, o any) { count(o) }, DeleteFunc: count})
	stop := make(chan struct{})
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	defer func() { close(stop); factory.Shutdown() }()

	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "canary:     {version: 1.0", "canary:     {version: 1.0.0", 1)
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "new canary Deployment", readyDeployment(client, ns, "account-service-canary-1.0.0", 4))
	poll(t, "old canary Deployment deleted", func() error {
		_, err := client.AppsV1().Deployments(ns).Get(ctx, "account-service-canary-1.0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	poll(t, "canary endpoints all on 1.0.0", func() error {
		n, err := readyEndpoints(client, ns, "account-service-canary")
		if err == nil && n != 4 {
			err = fmt.Errorf("%d ready endpoints", n)
		}
		return err
	})
	t.Logf("canary EndpointSlices changed %d times during the switch; fewest ready endpoints: %d", changes.Load(), fewest.Load())
	if fewest.Load() == 0 {
		t.Error("the canary Service had no ready endpoint during the switch")
	}
	if changes.Load() < 2 {
		t.Errorf("only %d EndpointSlice changes seen: the switch was not observed", changes.Load())
	}
}

func TestDriftInvalidEditAndNotOwned(t *testing.T) {
	client, ns, cm := setup(t)
	ctx := context.Background()
	// A Service with a name the spec wants, made by someone else.
	foreign := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "account-service-internal", Namespace: ns, Labels: map[string]string{"owner": "someone"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "other"}, Ports: []corev1.ServicePort{{Port: 9999}}}}
	if _, err := client.CoreV1().Services(ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An old canary deployed by hand, with the track's labels.
	oldLabels := map[string]string{"app": "account-service", "tier": "service", "track": "canary", "version": "0.2.1"}
	leftover := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "account-service-canary-0.2.1", Namespace: ns, Labels: oldLabels},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: oldLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: oldLabels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "account-service", Image: "example.com/a:0.2.1"}}}}}}
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, leftover, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctrl := start(t, client, ns)
	poll(t, "paid track", readyDeployment(client, ns, "account-service-paid-0.2.3", 4))
	poll(t, "NotOwned event", eventWith(client, ns, "NotOwned", "Service "+ns+"/account-service-internal"))
	poll(t, "NotOwned event for the leftover", eventWith(client, ns, "NotOwned", "account-service-canary-0.2.1 has the labels of track \"canary\""))
	if _, err := client.AppsV1().Deployments(ns).Get(ctx, leftover.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("a Deployment the controller does not own was deleted: %v", err)
	}
	if s, err := client.CoreV1().Services(ns).Get(ctx, "account-service-internal", metav1.GetOptions{}); err != nil || s.Spec.Ports[0].Port != 9999 {
		t.Errorf("a Service the controller does not own was changed: %v %v", s.Spec.Ports, err)
	}

	// Drift: a hand-scaled Deployment and a deleted Service are repaired.
	dep, err := client.AppsV1().Deployments(ns).Get(ctx, "account-service-paid-0.2.3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep.Spec.Replicas = ptr.To[int32](9)
	if _, err := client.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Services(ns).Delete(ctx, "account-service-paid", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "replicas restored to 4", func() error {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, "account-service-paid-0.2.3", metav1.GetOptions{})
		if err == nil && *d.Spec.Replicas != 4 {
			err = fmt.Errorf("replicas %d", *d.Spec.Replicas)
		}
		return err
	})
	poll(t, "Service recreated", func() error {
		_, err := client.CoreV1().Services(ns).Get(ctx, "account-service-paid", metav1.GetOptions{})
		return err
	})

	// An invalid edit changes nothing and gets a Warning Event.
	cm, err = client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "replicas: 4}", "replicas: 40}", -1)
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "{canary: 5,", "{canary: 300,", 1)
	writes := ctrl.Writes.Load()
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "InvalidSpec event", eventWith(client, ns, "InvalidSpec", "backends.canary.canary: weight 300 is out of range 0-256"))
	if w := ctrl.Writes.Load(); w != writes {
		t.Errorf("an invalid spec caused %d writes", w-writes)
	}
	if d, err := client.AppsV1().Deployments(ns).Get(ctx, "account-service-paid-0.2.3", metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 4 {
		t.Errorf("an invalid spec changed replicas: %v", err)
	}
}

func eventWith(client kubernetes.Interface, ns, reason, text string) func() error {
	return func() error {
		events, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=" + reason})
		if err != nil {
			return err
		}
		for _, e := range events.Items {
			if strings.Contains(e.Message, text) {
				return nil
			}
		}
		return fmt.Errorf("no %s event containing %q among %d", reason, text, len(events.Items))
	}
}

func TestDeleteSpecGarbageCollects(t *testing.T) {
	client, ns, cm := setup(t)
	start(t, client, ns)
	converge(t, client, ns)
	ctx := context.Background()
	if err := client.CoreV1().ConfigMaps(ns).Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "everything garbage-collected (the Services after the grace period)", func() error {
		deps, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		svcs, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + ManagedBy})
		if err != nil {
			return err
		}
		if n := len(deps.Items) + len(svcs.Items); n > 0 {
			return fmt.Errorf("%d Deployments and %d Services left", len(deps.Items), len(svcs.Items))
		}
		return nil
	})
}

// TestRestartWritesNothing starts a second controller on a converged
// service: a steady state costs no write.
func TestRestartWritesNothing(t *testing.T) {
	client, ns, _ := setup(t)
	first := start(t, client, ns)
	converge(t, client, ns)
	t.Logf("first controller: %d writes", first.Writes.Load())
	second := start(t, client, ns)
	// Proven by the controller's own account, not a sleep: every event of
	// its informers' initial lists handled (the spec's, and each of its
	// objects', Deployments' statuses included), nothing queued, no sync
	// running, seen twice with no sync between.
	var syncs int64 = -1
	poll(t, "second controller idle after its initial lists", func() error {
		if !second.Idle() || second.Syncs.Load() < 1 {
			syncs = -1
			return fmt.Errorf("busy: %d syncs", second.Syncs.Load())
		}
		if n := second.Syncs.Load(); n != syncs {
			syncs = n
			return fmt.Errorf("idle after %d syncs: once more", n)
		}
		return nil
	})
	t.Logf("second controller: %d syncs, idle", syncs)
	if w := second.Writes.Load(); w != 0 {
		t.Errorf("a restarted controller wrote %d times on a converged service", w)
	}
}

// TestTwoReplicasOnlyLeaderWrites runs two controllers that compete for one
// Lease: the service converges and only one of them writes.
func TestTwoReplicasOnlyLeaderWrites(t *testing.T) {
	client, ns, _ := setup(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var ctrls []*Controller
	done := make(chan struct{}, 2)
	for _, id := range []string{"replica-a", "replica-b"} {
		ctrl, factories := newController(client, ns, 0, log)
		ctrls = append(ctrls, ctrl)
		le := LeaderElection{Namespace: ns, Name: "track-controller", Identity: id,
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}
		go func() {
			RunAsLeader(ctx, client, le, log, func(ctx context.Context, _ func() bool) {
				factories.Start(ctx.Done())
				ctrl.Run(ctx, 2)
				factories.Shutdown()
			})
			done <- struct{}{}
		}()
	}
	defer func() { cancel(); <-done; <-done }()
	converge(t, client, ns)
	a, b := ctrls[0].Writes.Load(), ctrls[1].Writes.Load()
	t.Logf("writes: replica-a %d, replica-b %d", a, b)
	if (a == 0) == (b == 0) {
		t.Errorf("want exactly one replica writing, got replica-a %d and replica-b %d writes", a, b)
	}
}

// TestRenameServiceCleansUp renames the spec's service: everything of the
// old name goes, everything of the new name comes.
func TestRenameServiceCleansUp(t *testing.T) {
	client, ns, cm := setup(t)
	start(t, client, ns)
	converge(t, client, ns)
	ctx := context.Background()
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Labels[weights.ServiceLabel] = "accounts"
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "service: account-service", "service: accounts", 1)
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the new name's tier", readyDeployment(client, ns, "accounts-haproxy", 4))
	poll(t, "nothing left of the old name", func() error {
		var left []string
		deps, _ := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		for _, o := range deps.Items {
			left = append(left, "deployment/"+o.Name)
		}
		svcs, _ := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		for _, o := range svcs.Items {
			left = append(left, "service/"+o.Name)
		}
		sas, _ := client.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
		for _, o := range sas.Items {
			left = append(left, "serviceaccount/"+o.Name)
		}
		roles, _ := client.RbacV1().Roles(ns).List(ctx, metav1.ListOptions{})
		for _, o := range roles.Items {
			left = append(left, "role/"+o.Name)
		}
		rbs, _ := client.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
		for _, o := range rbs.Items {
			left = append(left, "rolebinding/"+o.Name)
		}
		for _, name := range left {
			if strings.Contains(name, "account-service") {
				return fmt.Errorf("left: %v", left)
			}
		}
		return nil
	})
}

// TestDriftInFullRepaired hand-edits a track Deployment's pod template (an
// env var added, the image, the readiness probe): every field the controller
// set is put back, a field it never set (an annotation a tool added) stays,
// and the repair then writes nothing more.
func TestDriftInFullRepaired(t *testing.T) {
	client, ns, _ := setup(t)
	ctx := context.Background()
	ctrl := start(t, client, ns)
	converge(t, client, ns)
	name := "account-service-canary-1.0"
	dep, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantTemplate := dep.Spec.Template.DeepCopy()
	c := &dep.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "HACK", Value: "1"})
	c.Image = "example.com/other:latest"
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9)}}}
	dep.Annotations = map[string]string{"tool.example.com/note": "kept"}
	if _, err := client.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the pod template put back", func() error {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got := d.Spec.Template.Spec.Containers[0]
		want := wantTemplate.Spec.Containers[0]
		if got.Image != want.Image || got.ReadinessProbe != nil && want.ReadinessProbe == nil || !equality.Semantic.DeepEqual(got.ReadinessProbe, want.ReadinessProbe) {
			return fmt.Errorf("image %s, probe %+v", got.Image, got.ReadinessProbe)
		}
		for _, e := range got.Env {
			if e.Name == "HACK" {
				return fmt.Errorf("env HACK still set")
			}
		}
		if d.Annotations["tool.example.com/note"] != "kept" {
			return fmt.Errorf("an annotation the controller never set was removed: %v", d.Annotations)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // the repair's own events settle
	writes := ctrl.Writes.Load()
	time.Sleep(3 * time.Second)
	if w := ctrl.Writes.Load() - writes; w != 0 {
		t.Errorf("%d writes after the repair; want 0", w)
	}

	// Another Server-Side Apply manager (Flux, Argo CD, kubectl apply
	// --server-side) adds an env var: put back once, then left alone, though
	// it keeps owning the container's name.
	ac := appsv1ac.Deployment(name, ns).WithSpec(appsv1ac.DeploymentSpec().WithTemplate(corev1ac.PodTemplateSpec().
		WithSpec(corev1ac.PodSpec().WithContainers(corev1ac.Container().WithName(wantTemplate.Spec.Containers[0].Name).
			WithEnv(corev1ac.EnvVar().WithName("DEBUG").WithValue("1"))))))
	if _, err := client.AppsV1().Deployments(ns).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "ops", Force: true}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the env var put back", func() error {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "DEBUG" {
				return fmt.Errorf("env DEBUG still set")
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	writes = ctrl.Writes.Load()
	time.Sleep(3 * time.Second)
	if w := ctrl.Writes.Load() - writes; w != 0 {
		t.Errorf("%d writes after putting back another apply manager's edit; want 0", w)
	}
}

// testServiceGrace keeps a deleted spec's Services for 5 s in tests.
const testServiceGrace = 5 * time.Second

// newController builds a controller on informers for namespace ns, as main does.
func newController(client kubernetes.Interface, ns string, resync time.Duration, log *slog.Logger) (*Controller, *Factories) {
	f := NewFactories(client, ns, resync)
	return New(client, f.Informers(), Options{RouterImage: "trackrouter:test", Log: log, ServiceGrace: testServiceGrace}), f
}

// TestEventsEveryDecision: one controller process records every decision
// on one spec as an Event, past client-go's defaults (25 per object, then
// one per 5 minutes; more than 10 alike in 10 minutes folded into one): 100
// decisions of each type, 100 Events each, on the real API server.
func TestEventsEveryDecision(t *testing.T) {
	client, ns, cm := setup(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctrl, _ := newController(client, ns, time.Minute, log)
	t.Cleanup(ctrl.events.Shutdown)
	const n = 100
	for i := 0; i < n; i++ {
		ctrl.recorder.Eventf(cm, corev1.EventTypeNormal, "ReleasePromote", "1.%d promoted from canary to paid", i)
		ctrl.recorder.Eventf(cm, corev1.EventTypeWarning, "ReleaseRollback", "1.%d rolled back on canary", i)
	}
	poll(t, fmt.Sprintf("%d Events of each reason", n), func() error {
		evs, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + cm.Name})
		if err != nil {
			return err
		}
		seen := map[string]map[string]bool{}
		for _, e := range evs.Items {
			if seen[e.Reason] == nil {
				seen[e.Reason] = map[string]bool{}
			}
			seen[e.Reason][e.Message] = true
		}
		if len(seen["ReleasePromote"]) != n || len(seen["ReleaseRollback"]) != n {
			return fmt.Errorf("%d ReleasePromote and %d ReleaseRollback Events with distinct messages, want %d each",
				len(seen["ReleasePromote"]), len(seen["ReleaseRollback"]), n)
		}
		return nil
	})
}
