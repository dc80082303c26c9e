package trackctl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/trackrouter/trackrouter/internal/pipeline"
)

// TestCockpitInBrowser: the board as a release cockpit in headless
// Chromium, on the test cluster with real sidecars and HAProxy: a release
// waiting for its approval (the path, the button), approved by a click on
// the page (the action's answer, then trackctl status), baking (the last
// look's evidence), rolled back (the evidence of the decision, the canary
// over the line), and done. A screenshot per state is kept in the
// artifacts directory, and every state's text reaches WCAG AA contrast.
func TestCockpitInBrowser(t *testing.T) {
	bin := chromium(t)
	r := newPipelineRig(t)
	r.waitRelease("", pipeline.Idle, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := &boardOptions{samples: "direct", every: time.Second}
	o.kube.kubeconfig, o.kube.namespace = r.c.Kubeconfig, r.ns
	page := "http://" + serveBoard(t, o) + "/service/" + r.ns + "/account-service"
	bctx, artifacts := browser(t, ctx, bin)
	if _, err := chromedp.Run(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	// state waits until the page (its live part, or the whole body) says
	// every word of want, keeps a screenshot and checks the contrast.
	state := func(name, sel string, want ...string) {
		t.Helper()
		start := time.Now()
		text, ok := pageSays(bctx, sel, 60*time.Second, want...)
		if !ok {
			t.Fatalf("%s: the page (%s) does not say %q; it says:\n%s", name, eval[string](t, bctx, "location.href"), want, text)
		}
		if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(filepath.Join(artifacts, "cockpit-"+name+".png"), png, 0o644)
		}
		if worst := eval[string](t, bctx, contrastJS); !strings.HasPrefix(worst, "ok") {
			t.Errorf("%s: text below WCAG AA contrast (4.5:1): %s", name, worst)
		}
		t.Logf("%s: on the page after %s", name, time.Since(start).Round(10*time.Millisecond))
	}

	if code, out := r.run("deploy", "account-service", "1.1"); code != ExitOK {
		t.Fatalf("deploy: %s", out)
	}
	state("waiting-approval", "#live", "▶ internal (gates)", "→ canary", "gate 1 of 1: approval", "Approve 1.1")

	// Approved from the page: the button's form, its token, the same code
	// as trackctl approve. Found and clicked in one step: a live update
	// replaces the page's live part, and with it any node found before.
	if !eval[bool](t, bctx, `(() => { const b = document.querySelector('button[title^="trackctl approve"]'); if (!b) { return false; } b.click(); return true; })()`) {
		t.Fatal("no Approve button to click")
	}
	state("approved", "body", "Done: trackctl approve account-service -n "+r.ns, "approved.internal")
	r.waitRelease("1.1", pipeline.Baking, "canary")
	if _, out := r.status("account-service"); !strings.Contains(strings.Join(strings.Fields(out), " "), "release 1.1: baking on canary") {
		t.Errorf("status after the page's approval:\n%s", out)
	}
	if _, err := chromedp.Run(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	state("baking", "#live", "✓ internal → ▶ canary (baking)", "last look: no breach yet, baking on", "5xx rate canary", "allowed")

	r.backends["canary"].failPerMille.Store(50)
	r.waitRelease("1.1", pipeline.RolledBack, "canary")
	r.backends["canary"].failPerMille.Store(0)
	state("rolled-back", "#live", "✗ canary (rolled back)", "decided: rollback on canary", "over the limit")
	// The plots mark where the release moved on their time axis.
	r.poll("the rollback marked on the plots", func() error {
		if n := eval[int](t, bctx, `[...document.querySelectorAll('line.mark title')].filter(e => e.textContent.includes('rollback 1.1 on canary')).length`); n == 0 {
			return fmt.Errorf("no mark")
		}
		return nil
	})
	if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
		os.WriteFile(filepath.Join(artifacts, "cockpit-rolled-back-marked.png"), png, 0o644)
	}
	// The overview says it too: where the build is, and why it stopped.
	if _, err := chromedp.Run(bctx, chromedp.Navigate(strings.TrimSuffix(page, "/service/"+r.ns+"/account-service")+"/")); err != nil {
		t.Fatal(err)
	}
	state("overview-rolled-back", "#live", "ROLLED BACK", "✗ 1.1 rolled back here", "✗ canary (rolled back)", "decided: rollback on canary: 5xx rate canary", "(over)")
	if _, err := chromedp.Run(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}

	if code, out := r.run("deploy", "account-service", "1.2"); code != ExitOK {
		t.Fatalf("deploy: %s", out)
	}
	r.waitRelease("1.2", pipeline.Gates, "internal")
	r.run("approve", "account-service")
	r.waitRelease("1.2", pipeline.Done, "production")
	state("done", "#live", "✓ internal → ✓ canary → ✓ paid → ✓ production", "1.2:")
}
