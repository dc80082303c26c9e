package controller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// Cluster mode under faults, on the real test control plane.

// TestExecuteFailsLoudly: without leader election, a controller that cannot
// serve its probes returns an error (main exits 1) instead of running blind.
func TestExecuteFailsLoudly(t *testing.T) {
	c := testcluster.Get(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = Execute(ctx, Config{Kubeconfig: c.Kubeconfig, Namespace: "ctrl-none", RouterImage: "x", Workers: 1,
		MetricsAddr: held.Addr().String()}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "address already in use") || ctx.Err() != nil {
		t.Errorf("want an error naming the busy address before the deadline, got %v", err)
	}
}

// TestTwoControllersOneHostname runs the shipped Execute twice on one host
// (one hostname): exactly one leads, and the other writes nothing.
func TestTwoControllersOneHostname(t *testing.T) {
	c := testcluster.Get(t)
	_, ns, _ := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	var addrs []string
	done := make(chan error, 2)
	// Two distinct ports: one port given twice made the second
	// controller's metrics server answer for both (a flaky "2 leaders").
	for i := 0; i < 2; i++ {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t)))
	}
	for i := 0; i < 2; i++ {
		cfg := Config{Kubeconfig: c.Kubeconfig, Namespace: ns, RouterImage: "trackrouter:test", Workers: 2,
			MetricsAddr: addrs[i], LeaderElect: true, LeaseNamespace: ns, LeaseName: "track-controller"}
		go func() { done <- Execute(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	}
	defer func() { cancel(); <-done; <-done }()
	converge(t, c.Client, ns)
	time.Sleep(3 * time.Second)
	leaders, writers := 0, 0
	for _, addr := range addrs {
		m := scrape(t, addr)
		if m["trackcontroller_leader"] == 1 {
			leaders++
		}
		if m["trackcontroller_writes_total"] > 0 {
			writers++
		}
	}
	if leaders != 1 || writers != 1 {
		t.Errorf("two controllers on one hostname: %d leaders and %d writers, want 1 and 1", leaders, writers)
	}
}

// scrape reads the plain numeric metrics of a /metrics endpoint.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

// TestForeignObjectGoneUnblocks: once someone else's Service holding a
// wanted name is deleted, the spec's own Service appears within seconds,
// not at the next resync.
func TestForeignObjectGoneUnblocks(t *testing.T) {
	client, ns, _ := setup(t)
	ctx := context.Background()
	foreign := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "account-service-canary", Namespace: ns},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9999}}}}
	if _, err := client.CoreV1().Services(ns).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start(t, client, ns) // resync one minute: longer than this test may wait
	poll(t, "NotOwned event", eventWith(client, ns, "NotOwned", "Service "+ns+"/account-service-canary"))
	if err := client.CoreV1().Services(ns).Delete(ctx, "account-service-canary", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	poll(t, "the spec's own Service", func() error {
		s, err := client.CoreV1().Services(ns).Get(ctx, "account-service-canary", metav1.GetOptions{})
		if err == nil && s.Annotations[AnnotationSpec] != "account-service" {
			return fmt.Errorf("not ours yet")
		}
		return err
	})
	if d := time.Since(deleted); d > blockedRecheck+10*time.Second {
		t.Errorf("the Service came %s after the blocking one went; want within %s", d, blockedRecheck)
	}
}

// TestShippedRBACSuffices runs the controller as the ServiceAccount that
// examples/install/track-controller.yaml defines, with exactly its ClusterRole: the
// service converges (Server-Side Apply needs patch; the sidecar's Role may
// only grant what the controller holds).
func TestShippedRBACSuffices(t *testing.T) {
	c := testcluster.Get(t)
	client, ns, _ := setup(t)
	ctx := context.Background()
	data, err := os.ReadFile("../examples/install/track-controller.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := obj.(*rbacv1.ClusterRole); ok {
			role = r
		}
	}
	if role == nil {
		t.Fatal("no ClusterRole in examples/install/track-controller.yaml")
	}
	role.Name = "track-controller-" + ns
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer client.RbacV1().ClusterRoles().Delete(ctx, role.Name, metav1.DeleteOptions{})
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "track-controller", Namespace: ns}}}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer client.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{})
	rc := rest.CopyConfig(c.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":track-controller"}
	asController, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := start(t, asController, ns)
	converge(t, client, ns)
	if n := ctrl.ApplyErrors.Load(); n != 0 {
		t.Errorf("%d writes refused", n)
	}
}

// TestDuplicateSpecOnCluster: a second ConfigMap for a running service,
// with another canary version, creates nothing (no pods of it join the
// canary Service), and both ConfigMaps get a Warning Event.
func TestDuplicateSpecOnCluster(t *testing.T) {
	client, ns, cm := setup(t)
	ctx := context.Background()
	ctrl := start(t, client, ns)
	converge(t, client, ns)
	dup := cm.DeepCopy()
	dup.Name, dup.ResourceVersion, dup.UID = "account-service-copy", "", ""
	dup.Data[weights.DataKey] = strings.Replace(dup.Data[weights.DataKey], "canary:     {version: 1.0", "canary:     {version: v9.9.9", 1)
	writes := ctrl.Writes.Load()
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, dup, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "DuplicateSpec on the copy", eventWith(client, ns, "DuplicateSpec", `service "account-service" is already defined`))
	poll(t, "NotOwned on the original", eventWith(client, ns, "NotOwned", "ConfigMap "+ns+"/account-service-copy also defines service"))
	time.Sleep(2 * time.Second)
	if _, err := client.AppsV1().Deployments(ns).Get(ctx, "account-service-canary-v9.9.9", metav1.GetOptions{}); err == nil {
		t.Error("the duplicate spec created its canary")
	}
	if w := ctrl.Writes.Load() - writes; w != 0 {
		t.Errorf("%d writes because of a duplicate spec; want 0", w)
	}
}

// TestAPIRejectedTemplate: a PodTemplate the API refuses in a Deployment
// (restartPolicy Never) gives ApplyFailed Events and a count, the objects
// that do not use it are still synced, and fixing it converges.
func TestAPIRejectedTemplate(t *testing.T) {
	client, ns, _ := setup(t)
	ctx := context.Background()
	tmpl, err := client.CoreV1().PodTemplates(ns).Get(ctx, "account-service", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := client.CoreV1().PodTemplates(ns).Update(ctx, tmpl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctrl := start(t, client, ns)
	poll(t, "ApplyFailed event", eventWith(client, ns, "ApplyFailed", "restartPolicy"))
	poll(t, "the HAProxy tier and the Services synced all the same", func() error {
		if _, err := client.AppsV1().Deployments(ns).Get(ctx, "account-service-haproxy", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err := client.CoreV1().Services(ns).Get(ctx, "account-service-canary", metav1.GetOptions{})
		return err
	})
	if ctrl.ApplyErrors.Load() == 0 {
		t.Error("no apply error counted")
	}
	tmpl, _ = client.CoreV1().PodTemplates(ns).Get(ctx, "account-service", metav1.GetOptions{})
	tmpl.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
	if _, err := client.CoreV1().PodTemplates(ns).Update(ctx, tmpl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	converge(t, client, ns)
}

// TestAutoscaledTrackOnCluster: with replicas: auto, a scale made by an
// autoscaler (the scale subresource) stays; the controller writes nothing
// for it.
func TestAutoscaledTrackOnCluster(t *testing.T) {
	client, ns, cm := setup(t)
	ctx := context.Background()
	ctrl := start(t, client, ns)
	converge(t, client, ns)
	cm, _ = client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], "canary:     {version: 1.0, replicas: 4}", "canary:     {version: 1.0, replicas: auto}", 1)
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	name := "account-service-canary-1.0"
	time.Sleep(2 * time.Second)
	if d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 4 {
		t.Fatalf("after the switch to auto: want 4 replicas kept, got %v %v", d.Spec.Replicas, err)
	}
	scale, err := client.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 6
	if _, err := client.AppsV1().Deployments(ns).UpdateScale(ctx, name, scale, metav1.UpdateOptions{FieldManager: "horizontal-pod-autoscaler"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	writes := ctrl.Writes.Load()
	for i := 0; i < 10; i++ {
		time.Sleep(time.Second)
		if d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 6 {
			t.Fatalf("the autoscaler's 6 replicas were changed: %v %v", d.Spec.Replicas, err)
		}
	}
	if w := ctrl.Writes.Load() - writes; w != 0 {
		t.Errorf("%d writes on an autoscaled track; want 0", w)
	}
}

// TestReplaceSpecKeepsServices deletes a spec and creates it again at once,
// as kubectl replace --force or a Helm reinstall do: its Services stay, with
// their ClusterIPs, and are not deleted after the grace period.
func TestReplaceSpecKeepsServices(t *testing.T) {
	client, ns, cm := setup(t)
	ctx := context.Background()
	start(t, client, ns)
	converge(t, client, ns)
	before := map[string]*corev1.Service{}
	for _, name := range []string{"account-service", "account-service-canary"} {
		s, err := client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before[name] = s
	}
	if err := client.CoreV1().ConfigMaps(ns).Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := cm.DeepCopy()
	again.ResourceVersion, again.UID = "", ""
	if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, again, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	converge(t, client, ns)
	time.Sleep(testServiceGrace + 2*time.Second)
	for name, b := range before {
		s, err := client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Service %s gone after the spec was replaced: %v", name, err)
			continue
		}
		if s.UID != b.UID || s.Spec.ClusterIP != b.Spec.ClusterIP {
			t.Errorf("Service %s was re-created: ClusterIP %s -> %s", name, b.Spec.ClusterIP, s.Spec.ClusterIP)
		}
	}
}
