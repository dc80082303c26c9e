package trackctl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// chromium is Debian's headless Chromium (.ci/run installs it); without it
// the browser test fails under CI and skips elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM_BIN"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: apt-get install -y chromium (.ci/run does)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium)")
	return ""
}

// TestBoardInBrowser: the board in headless Chromium, on the test cluster
// with the controller and real sidecars. The healthy fleet shows ok; a
// track down to 1 endpoint, a leftover version and an HAProxy pod on an
// older spec each appear on the open page, in words, pushed by the server;
// a weight edit moves the share shown. A screenshot per state is kept in
// the test's artifacts directory ($TRACKROUTER_ARTIFACTS, or a temporary
// one the log names).
func TestBoardInBrowser(t *testing.T) {
	bin := chromium(t)
	r := newFleet(t)
	r.waitHealthy()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := runBoardFor(t, &boardOptions{client: r.client, kube: kubeFlags{namespace: r.ns}, minEndpoints: 2}) + "/"

	bctx, artifacts := browser(t, ctx, bin)
	if _, err := chromedp.Run(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	// waitText waits until the page's live part says want, and keeps a
	// screenshot of that state.
	waitText := func(state, want string) {
		t.Helper()
		start := time.Now()
		if text, ok := pageSays(bctx, "#live", 30*time.Second, want); !ok {
			t.Fatalf("%s: the page does not say %q; it says:\n%s", state, want, text)
		}
		if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(filepath.Join(artifacts, state+".png"), png, 0o644)
		}
		t.Logf("%s: on the page %s after the change", state, time.Since(start).Round(10*time.Millisecond))
	}
	// rowSays waits until the service's row says want: a read can fall
	// on a live update replacing the row.
	rowSays := func(service, want string) bool {
		var text string
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
			tctx, c := context.WithTimeout(bctx, 5*time.Second)
			text, _ = chromedp.Run(tctx, chromedp.Text(chromedp.CSS(fmt.Sprintf(`tr[data-service="%s/%s"]`, r.ns, service))))
			c()
			if strings.Contains(text, want) {
				return true
			}
		}
		t.Logf("the row of %s says %q", service, text)
		return false
	}

	waitText("healthy", "account-service "+r.ns+" ok")
	if !rowSays("account-service", "FREE 5.0%") {
		t.Errorf("the canary's share of FREE is not shown")
	}
	if worst := eval[string](t, bctx, contrastJS); !strings.HasPrefix(worst, "ok") {
		t.Errorf("overview: text below WCAG AA contrast (4.5:1): %s", worst)
	} else {
		t.Logf("overview: the lowest contrast %s", worst)
	}

	// The keyboard alone: Tab reaches the service's link, and keeps it
	// across a live update; Enter opens the service's page.
	link := "/service/" + r.ns + "/account-service"
	focusedHref := func() string {
		return eval[string](t, bctx, `document.activeElement && document.activeElement.getAttribute('href') || ''`)
	}
	for i := 0; i < 20 && focusedHref() != link; i++ {
		if _, err := chromedp.Run(bctx, chromedp.KeyEvent(kb.Tab)); err != nil {
			t.Fatal(err)
		}
	}
	if got := focusedHref(); got != link {
		t.Fatalf("20 Tabs never reached the service's link (focus on %q)", got)
	}
	updated := eval[string](t, bctx, `document.body.getAttribute('data-updated') || ''`)
	// An annotation on a track's Deployment: an informer event (a patch,
	// which the controller leaves alone), so a live update of the page.
	if _, err := r.client.AppsV1().Deployments(r.ns).Patch(context.Background(), "account-service-internal-1.0.0", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"example.com/poked":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	r.poll("a live update", func() error {
		if eval[string](t, bctx, `document.body.getAttribute('data-updated') || ''`) == updated {
			return fmt.Errorf("no update yet")
		}
		return nil
	})
	if got := focusedHref(); got != link {
		t.Errorf("a live update took the focus from the service's link (now on %q)", got)
	}
	if _, err := chromedp.Run(bctx, chromedp.KeyEvent(kb.Enter)); err != nil {
		t.Fatal(err)
	}
	waitText("service-page", "Traffic")
	waitText("service-page-plotted", "(top of the scale")
	if worst := eval[string](t, bctx, contrastJS); !strings.HasPrefix(worst, "ok") {
		t.Errorf("service page: text below WCAG AA contrast (4.5:1): %s", worst)
	} else {
		t.Logf("service page: the lowest contrast %s", worst)
	}
	if _, err := chromedp.Run(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	waitText("healthy-overview", "account-service "+r.ns+" ok")

	// The controller would repair what follows: stop it.
	r.stopCtrl()
	r.stopCtrl = func() {}
	r.scale("account-service-canary-1.0", 1)
	waitText("one-endpoint", "canary: 1 ready endpoint, want at least 2")
	r.scale("account-service-canary-1.0", 4)
	waitText("healthy-again", "account-service "+r.ns+" ok")

	labels := map[string]string{"app": "account-service", "tier": "service", "track": "canary", "version": "0.2.1"}
	old := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "account-service-canary-0.2.1", Namespace: r.ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "account-service", Image: "hashicorp/http-echo:0.2.1"}}}}}}
	if _, err := r.client.AppsV1().Deployments(r.ns).Create(context.Background(), old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitText("leftover", "leftover Deployment account-service-canary-0.2.1")
	if err := r.client.AppsV1().Deployments(r.ns).Delete(context.Background(), old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	pods := r.routerPods()
	r.sidecars[pods[0]]()
	r.editSpec("{canary: 5, production: 95}", "{canary: 10, production: 90}")
	waitText("older-spec", "HAProxy pod "+pods[0]+" runs an older spec")
	if !rowSays("account-service", "FREE 10.0%") {
		t.Errorf("the weight edit did not move the share shown")
	}
	r.startSidecar(pods[0])
	waitText("healthy-at-last", "account-service "+r.ns+" ok")
}

// pageSays waits until the text of the page's part sel says every one of
// want (whitespace folded), for at most d; it returns the text last read.
func pageSays(bctx context.Context, sel string, d time.Duration, want ...string) (string, bool) {
	var text string
	for start := time.Now(); time.Since(start) < d; time.Sleep(100 * time.Millisecond) {
		tctx, c := context.WithTimeout(bctx, 5*time.Second)
		got, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		c()
		if err != nil {
			continue
		}
		text = strings.Join(strings.Fields(got), " ")
		if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(text, w) }) {
			return text, true
		}
	}
	return text, false
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// contrastJS finds the text with the lowest contrast against its
// background (WCAG 2's relative luminance): "ok" and the lowest ratio
// when every text reaches 4.5:1, else the ratio and the text.
const contrastJS = `(() => {
  const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = c => {
    const a = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2];
  };
  const bg = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) { return c; }
    }
    return [255, 255, 255];
  };
  let worst = {ratio: 99, text: ''};
  const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (w.nextNode()) {
    const n = w.currentNode, text = n.textContent.trim();
    if (!text) { continue; }
    const el = n.parentElement;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst.ratio) { worst = {ratio: ratio, text: text.slice(0, 60)}; }
  }
  return (worst.ratio >= 4.5 ? 'ok ' : '') + worst.ratio.toFixed(2) + ': ' + worst.text;
})()`

// browser starts headless Chromium for the test, and names the directory
// of its screenshots ($TRACKROUTER_ARTIFACTS, or a temporary one).
func browser(t *testing.T, ctx context.Context, bin string) (context.Context, string) {
	t.Helper()
	artifacts := os.Getenv("TRACKROUTER_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "trackrouter-board-artifacts")
	}
	os.MkdirAll(artifacts, 0o755)
	t.Logf("screenshots in %s", artifacts)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	return bctx, artifacts
}

// runBoardFor runs trackctl board with o (its plots read directly, every
// second) as serveBoard does, and returns its base URL once it serves.
func runBoardFor(t *testing.T, o *boardOptions) string {
	t.Helper()
	o.samples, o.every = "direct", time.Second
	return "http://" + serveBoard(t, o)
}
