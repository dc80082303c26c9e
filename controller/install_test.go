package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trackrouter/trackrouter/controller/releases"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
)

// TestInstallWithKubectl applies the install and the example the way the
// README says, with the kubectl of the cluster's version: an overlay of
// examples/install that changes the image with one kustomize images: entry,
// and an overlay of examples/account-service into its own namespace. The
// controller then runs here as the install's ServiceAccount (impersonated,
// so its RBAC is the one under test), without --router-image, reading its
// image from one of the install's Pods, and converges the example: every
// track Deployment available, and the HAProxy tier on the overlay's image.
// Deleting the example with kubectl delete -k leaves the install alone.
func TestInstallWithKubectl(t *testing.T) {
	c := testcluster.Get(t)
	kubectl, err := testcluster.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	dir := t.TempDir()
	// kustomize takes bases by relative path only.
	rel := func(from, to string) string {
		abs, _ := filepath.Abs(to)
		r, err := filepath.Rel(from, abs)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	install := rel(filepath.Join(dir, "install"), "../examples/install")
	app := rel(filepath.Join(dir, "app"), "../examples/account-service")
	const image = "registry.example.com/mirror/trackrouter:0.1.1"
	writeTestFile(t, filepath.Join(dir, "install", "kustomization.yaml"), fmt.Sprintf(`resources: [%s]
images:
  - name: ghcr.io/trackrouter/trackrouter
    newName: registry.example.com/mirror/trackrouter
    newTag: 0.1.1
`, install))
	const ns = "shop-install"
	writeTestFile(t, filepath.Join(dir, "app", "kustomization.yaml"), fmt.Sprintf("resources: [%s]\nnamespace: %s\n", app, ns))
	run("apply", "-k", filepath.Join(dir, "install"))
	run("create", "namespace", ns)
	convergeExample(t, c, installed{ns: "trackrouter-system", name: "track-controller", image: image}, filepath.Join(dir, "app"), ns)
	if _, err := c.Client.AppsV1().Deployments("trackrouter-system").Get(ctx, "track-controller", metav1.GetOptions{}); err != nil {
		t.Errorf("deleting the example took the install with it: %v", err)
	}
}

// installed is track-controller as an install put it on the test cluster:
// its namespace, the name of its objects, and its image.
type installed struct{ ns, name, image string }

// convergeExample runs the controller here as the install's ServiceAccount
// (impersonated, so that its RBAC is the one under test), in one of the
// install's Pods, without --router-image; the install's webhook is pointed
// at it (removed when the test ends). The example (the kustomization in
// app, into appNS) goes in through the webhook, a bad spec is refused at
// kubectl, every track Deployment becomes available and the HAProxy tier
// runs the install's image; the example is then deleted.
func convergeExample(t *testing.T, c *testcluster.Cluster, in installed, app, appNS string) {
	t.Helper()
	ctx := context.Background()
	kubectl, err := testcluster.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ns, image := appNS, in.image
	dir := t.TempDir()
	// The shipped webhook is called through its Service, which reaches no
	// real pod here: point it at the controller this test runs on loopback.
	// Cluster-wide, with failurePolicy Fail: removed when the test ends.
	webhookAddr := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	defer c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), in.name, metav1.DeleteOptions{})
	run("patch", "validatingwebhookconfiguration", in.name, "--type=json",
		"-p", `[{"op":"replace","path":"/webhooks/0/clientConfig","value":{"url":"https://`+webhookAddr+`/validate"}}]`)

	// The install's Deployment runs (kwok plays its pods).
	poll(t, in.name+" Deployment", readyDeployment(c.Client, in.ns, in.name, 2))
	pods, err := c.Client.CoreV1().Pods(in.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + in.name})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("controller pods: %v, %v", pods, err)
	}
	if got := pods.Items[0].Spec.Containers[0].Image; got != image {
		t.Fatalf("the overlay's images: entry: controller image %q, want %q", got, image)
	}

	// Run the controller as its ServiceAccount, in "its" Pod.
	kc, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = "system:serviceaccount:" + in.ns + ":" + in.name
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + in.ns, "system:authenticated"}
	}
	asSA := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, asSA); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAMESPACE", in.ns)
	t.Setenv("POD_NAME", pods.Items[0].Name)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	go func() {
		done <- Execute(runCtx, Config{Kubeconfig: asSA, Namespace: ns, Workers: 2, LeaderElect: true,
			LeaseNamespace: in.ns, LeaseName: in.name + "-install-test", QPS: 50, Burst: 100,
			Webhook: WebhookConfig{Addr: webhookAddr, Secret: in.ns + "/" + in.name + "-webhook", Configuration: in.name,
				IPs: []net.IP{net.ParseIP("127.0.0.1")}, Refresh: time.Second}}, log)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && err != context.Canceled {
				t.Errorf("controller: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("controller did not stop")
		}
	}()

	// The controller, as the install's ServiceAccount, makes the webhook's
	// certificate and sets its caBundle; then the example goes in through
	// the webhook, and a bad spec is refused at kubectl apply.
	poll(t, "the webhook admits the example", func() error {
		out, err := exec.Command(kubectl, "--kubeconfig", c.Kubeconfig, "apply", "-k", app, "--dry-run=server").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	run("apply", "-k", app)
	bad, err := exec.Command(kubectl, "--kubeconfig", c.Kubeconfig, "-n", ns, "patch", "configmap", "account-service", "--type=merge", "--dry-run=server",
		"-p", `{"data":{"service.yaml":"service: account-service\nport: 70000\n"}}`).CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "specs.trackrouter.dev") || !strings.Contains(string(bad), ":2: port: port 70000 is out of range 1-65535") {
		t.Errorf("kubectl patch of a bad spec: %v\n%s", err, bad)
	}
	for track, replicas := range map[string]int32{"internal": 2, "canary": 4, "paid": 4, "production": 10} {
		name := fmt.Sprintf("account-service-%s-%s", track, map[string]string{"internal": "1.0.0", "canary": "1.0", "paid": "0.2.3", "production": "0.2.3"}[track])
		poll(t, "track "+track, readyDeployment(c.Client, ns, name, replicas))
	}
	poll(t, "HAProxy tier on the overlay's image", func() error {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "account-service-haproxy", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := d.Spec.Template.Spec.Containers[0].Image; got != image {
			return fmt.Errorf("image %q, want %q", got, image)
		}
		if !releases.Available(d) {
			return fmt.Errorf("%d of %d available", d.Status.AvailableReplicas, *d.Spec.Replicas)
		}
		return nil
	})

	scopeRefuses(t, c, asSA, ns)
	run("delete", "-k", app)
}

// scopeRefuses: as the install's ServiceAccount (kubeconfig asSA), a write
// outside what the controller owns is refused by the install's policy
// (controller-scope.yaml), though its ClusterRole allows it: a ConfigMap in
// kube-system, a team's unlabelled ConfigMap in ns, a RoleBinding to a
// ClusterRole.
func scopeRefuses(t *testing.T, c *testcluster.Cluster, asSA, ns string) {
	t.Helper()
	ctx := context.Background()
	rc, err := clientcmd.BuildConfigFromFlags("", asSA)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(rc)
	for _, where := range []string{"kube-system", ns} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "scope-test", Namespace: where}, Data: map[string]string{"Corefile": ".:53 { forward . 10.0.0.1 }"}}
		if _, err := c.Client.CoreV1().ConfigMaps(where).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		_, err := sa.CoreV1().ConfigMaps(where).Patch(ctx, "scope-test", types.MergePatchType, []byte(`{"data":{"Corefile":"hijacked"}}`), metav1.PatchOptions{})
		want := map[string]string{"kube-system": "track-controller writes nothing in kube-system", ns: "track-controller writes only what carries its label"}[where]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the controller's ServiceAccount patching ConfigMap %s/scope-test: %v (want refused: %s)", where, err, want)
		}
	}
	reader := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "scope-test-reader"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, reader, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scope-test", Namespace: ns, Labels: map[string]string{LabelManagedBy: ManagedBy}},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: reader.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}}}
	if _, err := sa.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "binds only Roles") {
		t.Errorf("the controller's ServiceAccount binding a ClusterRole: %v", err)
	}
}

func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOwnImage: the controller's image comes from its own container; what
// is missing is said with what to do.
func TestOwnImage(t *testing.T) {
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tc-1", Namespace: "trackrouter-system"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "proxy", Image: "envoy:1"}, {Name: "track-controller", Image: "mirror/trackrouter:0.1.1"}}}}
	client := fake.NewClientset(pod)
	if got, err := OwnImage(ctx, client, "trackrouter-system", "tc-1"); err != nil || got != "mirror/trackrouter:0.1.1" {
		t.Errorf("OwnImage: %q, %v", got, err)
	}
	for _, tc := range []struct{ ns, name, want string }{
		{"", "", "--router-image is required outside a Pod"},
		{"trackrouter-system", "gone", "read the controller's own Pod trackrouter-system/gone for its image (pass --router-image, or grant get on pods in trackrouter-system)"},
	} {
		if _, err := OwnImage(ctx, client, tc.ns, tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OwnImage(%q, %q): %v, want %q", tc.ns, tc.name, err, tc.want)
		}
	}
}
