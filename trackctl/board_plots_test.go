package trackctl

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBoardPlotsTraffic: a service page plots what real HAProxy pods
// served, read from their sidecars: the canary's 10% of failures shows
// as 5xx on the canary only, and each track's requests/s is near what
// its backend served.
func TestBoardPlotsTraffic(t *testing.T) {
	r := newPipelineRig(t)
	r.backends["canary"].failPerMille.Store(100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := runBoardFor(t, &boardOptions{client: r.client, kube: kubeFlags{namespace: r.ns}, minEndpoints: 1})

	page := base + "/service/" + r.ns + "/account-service"
	if code, body := get(t, page); code != 200 || !strings.Contains(body, `id="traffic"`) {
		t.Fatalf("the service page: %d\n%s", code, body)
	}
	row := regexp.MustCompile(`(?s)<tr data-track="([a-z]+)">.*?</tr>`)
	now := regexp.MustCompile(`<span class="now">([^<]*)</span>`)
	type rates struct{ req, errs float64 }
	var last map[string]rates
	var body string
	start := time.Now()
	for time.Since(start) < 60*time.Second {
		_, body = get(t, base+"/fragment/service/"+r.ns+"/account-service")
		last = map[string]rates{}
		for _, m := range row.FindAllStringSubmatch(body, -1) {
			v := now.FindAllStringSubmatch(m[0], -1)
			if len(v) != 3 {
				continue
			}
			req, _ := strconv.ParseFloat(strings.TrimSuffix(v[0][1], "/s"), 64)
			errs, _ := strconv.ParseFloat(strings.TrimSuffix(v[1][1], "/s"), 64)
			last[m[1]] = rates{req, errs}
		}
		if c, p := last["canary"], last["production"]; c.req > 20 && c.errs > 0 && p.req > 20 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("rates on the page after %s: %v", time.Since(start).Round(100*time.Millisecond), last)
	c, p := last["canary"], last["production"]
	if c.req <= 20 || p.req <= 20 {
		t.Fatalf("no traffic plotted for the canary or production:\n%s", body)
	}
	// 10% of the canary's requests fail; none of production's. One
	// second's point is noisy: a loose band.
	if share := c.errs / c.req; share < 0.03 || share > 0.25 {
		t.Errorf("canary: %.1f 5xx/s of %.1f requests/s, want about 10%%", c.errs, c.req)
	}
	if p.errs != 0 {
		t.Errorf("production: %.1f 5xx/s, want none", p.errs)
	}
	if !strings.Contains(body, "<polyline points=") || strings.Contains(body, "Not read") {
		t.Errorf("no plot drawn, or a pod not read:\n%s", body)
	}

	// What it looks like, with traffic: a screenshot in the artifacts.
	bctx, artifacts := browser(t, ctx, chromium(t))
	if _, err := chromedp.Run(bctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // a few more points
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(artifacts, "plots.png"), png, 0o644)
}
