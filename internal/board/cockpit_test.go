package board

import (
	"reflect"
	"testing"

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
		{&pipeline.Status{Stage: "canary", Phase: pipeline.RolledBack}, []string{"internal:passed:", "canary:failed:rolledback", "production::"}},
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
