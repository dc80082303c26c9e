package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/trackrouter/trackrouter/controller"
	"github.com/trackrouter/trackrouter/examples"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
)

func TestMain(m *testing.M) {
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	os.Exit(testcluster.Main(m))
}

// TestPausedLeaderWritesNothing runs the shipped binary twice on one host.
// The leader is paused (SIGSTOP) past its lease, the other takes over; when
// the first resumes, it writes nothing, though its caches see drift to fix.
func TestPausedLeaderWritesNothing(t *testing.T) {
	c := testcluster.Get(t)
	ctx := context.Background()
	ns := "paused-leader"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, tmpl, err := examples.AccountServiceObjects(ns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PodTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "track-controller")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	start := func(name string) (*exec.Cmd, string) {
		addr := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
		cmd := exec.Command(bin, "--kubeconfig", c.Kubeconfig, "--namespace", ns, "--router-image", "x",
			"--metrics-addr", addr, "--lease-namespace", ns)
		cmd.Stderr = io.Discard
		if testing.Verbose() {
			cmd.Stderr = prefixed{name + ": "}
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGCONT)
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
		return cmd, addr
	}
	waitMetric := func(what, addr, name string, want func(float64) bool) {
		t.Helper()
		var last float64
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
			v, ok := metric(addr, name)
			last = v
			return ok && want(v), nil
		})
		if err != nil {
			t.Fatalf("%s: %s is %v", what, name, last)
		}
	}
	a, addrA := start("a")
	waitMetric("a leads", addrA, "trackcontroller_leader", func(v float64) bool { return v == 1 })
	waitMetric("a converges", addrA, "trackcontroller_writes_total", func(v float64) bool { return v >= 13 })
	_, addrB := start("b")
	time.Sleep(3 * time.Second)
	if v, _ := metric(addrB, "trackcontroller_leader"); v != 0 {
		t.Fatalf("two leaders on one hostname")
	}

	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitMetric("b takes over", addrB, "trackcontroller_leader", func(v float64) bool { return v == 1 })
	scale := func(name string, n int32) {
		t.Helper()
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Replicas = ptr.To(n)
		if _, err := c.Client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{FieldManager: "kubectl-scale"}); err != nil {
			t.Fatal(err)
		}
	}
	// Drift that a's caches will see as soon as it runs again.
	scale("account-service-paid-0.2.3", 1)
	waitMetric("b repairs", addrB, "trackcontroller_writes_total", func(v float64) bool { return v >= 1 })
	time.Sleep(2 * time.Second)
	writesA := -1.0
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	scale("account-service-canary-1.0", 1)
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) {
		if v, ok := metric(addrA, "trackcontroller_writes_total"); ok {
			if writesA < 0 {
				writesA = v
			} else if v != writesA {
				t.Fatalf("the resumed replica wrote: writes %v -> %v", writesA, v)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "account-service-canary-1.0", metav1.GetOptions{})
	if err != nil || *d.Spec.Replicas != 4 {
		t.Errorf("the leader did not repair canary: %v", err)
	}
}

// metric reads one plain metric from a /metrics endpoint.
func metric(addr, name string) (float64, bool) {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// prefixed writes a child's log to the test's stderr with a prefix.
type prefixed struct{ prefix string }

func (p prefixed) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprint(os.Stderr, p.prefix+line)
		}
	}
	return len(b), nil
}

// TestFlagValues: values that make no sense are refused before anything
// runs (exit 2 in main), each with what to give instead.
func TestFlagValues(t *testing.T) {
	ok := controller.Config{Workers: 2, HealthInterval: time.Second, MinEndpoints: 2}
	for _, tc := range []struct {
		mod  func(*controller.Config)
		want string
	}{
		{func(c *controller.Config) { c.Workers = -3 }, "--workers -3: at least 1"},
		{func(c *controller.Config) { c.MinEndpoints = -7 }, "--min-endpoints -7"},
		{func(c *controller.Config) { c.HealthInterval = -5 * time.Second }, "--health-interval"},
		{func(c *controller.Config) { c.Alerts.After = -time.Hour }, "--alert-after"},
		{func(c *controller.Config) { c.QPS = -1 }, "--kube-api-qps"},
	} {
		cfg := ok
		tc.mod(&cfg)
		if err := checkFlags(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
	if err := checkFlags(ok); err != nil {
		t.Errorf("sound flags refused: %v", err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		a    controller.AlertConfig
		dir  string
		want string
	}{
		{controller.AlertConfig{SMTPAddr: "smtp.example.com", SMTPFrom: "a@b.c", SMTPTo: []string{"d@e.f"}}, "", "want HOST:PORT"},
		{controller.AlertConfig{SMTPAddr: "smtp.example.com:587", SMTPFrom: "not an address", SMTPTo: []string{"d@e.f"}}, "", "alert email address"},
		{controller.AlertConfig{WebhookURL: "http://"}, "", "want http(s)://HOST"},
		{controller.AlertConfig{SMTPUsername: "u"}, "", "needs --alert-smtp-addr"},
		{controller.AlertConfig{SMTPAddr: "s:587", SMTPFrom: "a@b.c", SMTPTo: []string{"d@e.f"}, SMTPCAFile: "/nonexistent.pem"}, "", "--alert-smtp-ca-file"},
		{controller.AlertConfig{}, filepath.Join(dir, "typo"), "not a directory"},
	} {
		a := tc.a
		if err := alertSecrets(&a, tc.dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want %q, got %v", tc.a, tc.want, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "webhook-url"), []byte("https://hooks.example.com/x\n"), 0o600)
	a := controller.AlertConfig{}
	if err := alertSecrets(&a, dir); err != nil || a.WebhookURL != "https://hooks.example.com/x" {
		t.Errorf("the secret dir's webhook-url: %q, %v", a.WebhookURL, err)
	}
}
