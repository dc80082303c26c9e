package router

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/router/haproxy"
)

func TestPlan(t *testing.T) {
	k := func(b, s string) haproxyconf.ServerKey { return haproxyconf.ServerKey{Backend: b, Server: s} }
	want := &haproxyconf.Rendered{
		Stamp:   "trackrouter:bbb",
		Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): 30, k("free", "production"): 70},
		Groups:  map[string]string{"free": "free", "beta": "free"},
	}
	running := func(stamp string, canary int, groups map[string]string) haproxy.Observed {
		return haproxy.Observed{Stamp: stamp, Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): canary, k("free", "production"): 100 - canary}, Groups: groups}
	}
	same := map[string]string{"free": "free", "beta": "free"}
	tests := []struct {
		name string
		obs  haproxy.Observed
		want Plan
	}{
		{"in sync", running("trackrouter:bbb", 30, same), Plan{Action: ActNone, Why: "HAProxy runs the spec"}},
		{"nothing of ours runs", haproxy.Observed{}, Plan{Action: ActReload, Why: "first config: HAProxy runs no stamped config"}},
		{"other structure", running("trackrouter:aaa", 30, same), Plan{Action: ActReload, Why: "HAProxy runs trackrouter:aaa, the spec renders trackrouter:bbb"}},
		{"weights", running("trackrouter:bbb", 5, same), Plan{Action: ActRuntime,
			Why:     "weights free/canary 5->30, free/production 95->70",
			Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): 30, k("free", "production"): 70}}},
		{"groups", running("trackrouter:bbb", 30, map[string]string{"free": "all", "old": "free"}), Plan{Action: ActRuntime,
			Why:    "groups beta none->free, free all->free, old free->none",
			Groups: same}},
		{"a server HAProxy lacks", haproxy.Observed{Stamp: "trackrouter:bbb", Weights: map[haproxyconf.ServerKey]int{k("free", "production"): 70}, Groups: same},
			Plan{Action: ActRuntime, Why: "weights free/canary none->30", Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): 30}}},
		{"a server put in maintenance by hand", haproxy.Observed{Stamp: "trackrouter:bbb", Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): 30, k("free", "production"): 70},
			Groups: same, Forced: map[haproxyconf.ServerKey]bool{k("free", "canary"): true}},
			Plan{Action: ActRuntime, Why: "free/canary forced maint/drain->ready", Ready: []haproxyconf.ServerKey{k("free", "canary")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, plan(tc.obs, want)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}
