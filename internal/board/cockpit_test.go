package board

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/pipeline"
)

// TestReleasePath: the stages as a build walks them, with the release's
// place and phase.
func TestReleasePath(t *testing.T) {
	stages := []string{"internal", "canary", "production"}
	marks := func(r *pipeline.Status) []string {
		var out []string
		for _, s := range releasePath(stages, r) {
			out = append(out, s.Stage+":"+s.Mark+":"+s.Words)
		}
		return out
	}
	for _, tc := range []struct {
		r    *pipeline.Status
		want []string
	}{
		{nil, []string{"internal::", "canary::", "production::"}},
		{&pipeline.Status{Stage: "canary", Phase: pipeline.Baking}, []string{"internal:passed:", "canary:here:baking", "production::"}},
		{&pipeline.Status{Stage: "canary", Phase: pipeline.RolledBack}, []string{"internal:passed:", "canary:failed:rolled back", "production::"}},
		{&pipeline.Status{Stage: "production", Phase: pipeline.Done}, []string{"internal:passed:", "canary:passed:", "production:passed:"}},
		{&pipeline.Status{Stage: "internal", Phase: pipeline.Gates}, []string{"internal:here:gates", "canary::", "production::"}},
	} {
		if got := marks(tc.r); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.r, got, tc.want)
		}
	}
}

// TestFoldPods: a problem that several HAProxy pods share is one line
// naming them; others stay as they are.
func TestFoldPods(t *testing.T) {
	pods := []fleet.PodState{{Name: "web-haproxy-a"}, {Name: "web-haproxy-b"}, {Name: "web-haproxy-c"}}
	got := foldPods([]string{
		"HAProxy pod web-haproxy-a has not reported what it runs",
		"canary: 1 ready endpoint, want at least 2",
		"HAProxy pod web-haproxy-b has not reported what it runs",
		"HAProxy pod web-haproxy-c runs an older spec",
		"HAProxy pod web-haproxy-c has not reported what it runs",
	}, pods)
	want := []string{
		"on 3 HAProxy pods (web-haproxy-a, web-haproxy-b, web-haproxy-c): each has not reported what it runs",
		"canary: 1 ready endpoint, want at least 2",
		"HAProxy pod web-haproxy-c runs an older spec",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

// TestEvidenceDrawn: a rollback's evidence is drawn after the stage moved
// on (from its decision), the canary past the line; a baking release
// draws its last look; none without numbers.
func TestEvidenceDrawn(t *testing.T) {
	ev := &analysis.Evidence{CanaryRequests: 600, CanaryErrors: 30, BaselineRequests: 11000, BaselineErrors: 11, AllowedErrors: 0.0062,
		CanaryP95: 60, BaselineP95: 50, AllowedP95: 90}
	r := &pipeline.Status{Phase: pipeline.RolledBack, Stage: "canary", Decisions: []pipeline.Decision{
		{Kind: pipeline.Start, Stage: "internal"},
		{Kind: pipeline.Rollback, Stage: "canary", Reason: "1.2 rolled back on canary: canary errors 5.0%", Evidence: ev},
	}}
	v := evidenceOf(r, []string{"internal", "canary", "production"})
	if v == nil || len(v.Bars) != 2 {
		t.Fatalf("evidence %+v", v)
	}
	errs, p95 := v.Bars[0], v.Bars[1]
	if !errs.Over || errs.CanaryW <= errs.AllowedX || errs.Canary != "5.00% (30 of 600)" || errs.Allowed != "0.62%" {
		t.Errorf("errors: %+v", errs)
	}
	if p95.Over || p95.CanaryW >= p95.AllowedX || p95.Allowed != "90 ms" {
		t.Errorf("p95: %+v", p95)
	}
	if !strings.Contains(v.What, "rollback on canary") || !strings.Contains(v.Verdict, "rolled back") || v.Baseline != "production" {
		t.Errorf("words: %q, %q, baseline %q", v.What, v.Verdict, v.Baseline)
	}
	baking := &pipeline.Status{Phase: pipeline.Baking, Judged: &pipeline.Judgement{Action: analysis.Wait, Reason: "baking", Evidence: &analysis.Evidence{CanaryRequests: 10, BaselineRequests: 100}}}
	if v := evidenceOf(baking, nil); v == nil || v.What != "last look: no breach yet, baking on" || v.Bars[1].Tested {
		t.Errorf("baking: %+v", v)
	}
	if v := evidenceOf(&pipeline.Status{Phase: pipeline.Gates}, nil); v != nil {
		t.Errorf("no evidence yet: %+v", v)
	}
}

// TestMarksOnTheAxis: the release's decisions of the plotted span are
// marked where they fell on it; older ones are not.
func TestMarksOnTheAxis(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 5, 0, 0, time.UTC)
	r := &pipeline.Status{Decisions: []pipeline.Decision{
		{At: now.Add(-10 * time.Minute), Kind: pipeline.Start, Version: "1.1", Stage: "internal"},
		{At: now.Add(-150 * time.Second), Kind: pipeline.Promote, Version: "1.1", Stage: "canary"},
		{At: now, Kind: pipeline.Rollback, Version: "1.1", Stage: "canary"},
	}}
	got := marksOf(r, now, 5*time.Minute)
	want := []Mark{{X: 120, Label: "12:02:30 promote 1.1 on canary"}, {X: 240, Label: "12:05:00 rollback 1.1 on canary"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if spanWords(5*time.Minute) != "5 min" {
		t.Errorf("span %q", spanWords(5*time.Minute))
	}
}

// TestOverviewDrawsARelease: the overview renders a service with a release
// whole (a template that failed half way once cut the page after the
// release's row).
func TestOverviewDrawsARelease(t *testing.T) {
	b := New(fake.NewClientset(), "shop", fleet.Options{})
	h := &fleet.Health{Namespace: "shop", Service: "web", Tracks: []fleet.TrackHealth{{Name: "canary", Version: "1.0"}}, Release: &pipeline.Status{Version: "1.1", Stage: "canary", Phase: pipeline.RolledBack,
		Decisions: []pipeline.Decision{{Kind: pipeline.Rollback, Version: "1.1", Stage: "canary", Evidence: &analysis.Evidence{CanaryRequests: 100, CanaryErrors: 5, AllowedErrors: 0.01}}}}}
	// The rollback set the canary's weight to 0.
	h.Backends = []fleet.BackendHealth{{Name: "free", Servers: []fleet.ServerHealth{{Track: "canary", Weight: 0}, {Track: "production", Weight: 100, Share: 100}}}}
	b.healths, b.stages = []*fleet.Health{h}, map[string][]string{"shop/web": {"internal", "canary", "production"}}
	var out strings.Builder
	if err := templates.ExecuteTemplate(&out, "overview.html", b.overview()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"✓ internal", "✗ canary (rolled back)", "✗ 1.1 rolled back here", "decided: rollback on canary", "(over)", "(baseline production 0.00% (0 of 0))", "no traffic (weight 0)", "</html>"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the overview does not say %q:\n%s", want, out.String())
		}
	}
}

// TestDecisionsNewestFirst: the service page lists the release's
// decisions as the history, newest first (they were oldest first,
// numbered backwards).
func TestDecisionsNewestFirst(t *testing.T) {
	b := New(fake.NewClientset(), "shop", fleet.Options{})
	h := &fleet.Health{Namespace: "shop", Service: "web", Tracks: []fleet.TrackHealth{{Name: "canary", Version: "1.0"}}, Release: &pipeline.Status{Version: "1.1", Stage: "canary", Phase: pipeline.Baking,
		Decisions: []pipeline.Decision{{Kind: pipeline.Start, Version: "1.1", Stage: "internal", Reason: "first"}, {Kind: pipeline.Promote, Version: "1.1", Stage: "canary", Reason: "second"}}}}
	b.healths, b.stages = []*fleet.Health{h}, map[string][]string{"shop/web": {"internal", "canary", "production"}}
	p, ok := b.service("shop", "web")
	if !ok {
		t.Fatal("no page for shop/web")
	}
	var out strings.Builder
	if err := templates.ExecuteTemplate(&out, "service.html", p); err != nil {
		t.Fatal(err)
	}
	page := out.String()
	first, second := strings.Index(page, ": first</li>"), strings.Index(page, ": second</li>")
	if first < 0 || second < 0 || second > first || !strings.Contains(page, "Decisions, newest first") {
		t.Errorf("decisions not newest first (first at %d, second at %d):\n%s", first, second, page)
	}
}
