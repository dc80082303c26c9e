package router

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/haproxyconf"
)

func TestPlan(t *testing.T) {
	k := func(b, s string) haproxyconf.ServerKey { return haproxyconf.ServerKey{Backend: b, Server: s} }
	want := &haproxyconf.Rendered{
		Stamp:   "trackrouter:bbb",
		Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): 30, k("free", "production"): 70},
		Groups:  map[string]string{"free": "free", "beta": "free"},
	}
	running := func(stamp string, canary int, groups map[string]string) Observed {
		return Observed{Stamp: stamp, Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): canary, k("free", "production"): 100 - canary}, Groups: groups}
	}
	same := map[string]string{"free": "free", "beta": "free"}
	tests := []struct {
		name string
		obs  Observed
		want Plan
	}{
		{"in sync", running("trackrouter:bbb", 30, same), Plan{Action: ActNone, Why: "HAProxy runs the spec"}},
		{"nothing of ours runs", Observed{}, Plan{Action: ActReload, Why: "first config: HAProxy runs no stamped config"}},
		{"other structure", running("trackrouter:aaa", 30, same), Plan{Action: ActReload, Why: "HAProxy runs trackrouter:aaa, the spec renders trackrouter:bbb"}},
		{"weights", running("trackrouter:bbb", 5, same), Plan{Action: ActRuntime,
			Why:     "weights free/canary 5->30, free/production 95->70",
			Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): 30, k("free", "production"): 70}}},
		{"groups", running("trackrouter:bbb", 30, map[string]string{"free": "all", "old": "free"}), Plan{Action: ActRuntime,
			Why:    "groups beta none->free, free all->free, old free->none",
			Groups: same}},
		{"a server HAProxy lacks", Observed{Stamp: "trackrouter:bbb", Weights: map[haproxyconf.ServerKey]int{k("free", "production"): 70}, Groups: same},
			Plan{Action: ActRuntime, Why: "weights free/canary none->30", Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): 30}}},
		{"a server put in maintenance by hand", Observed{Stamp: "trackrouter:bbb", Weights: map[haproxyconf.ServerKey]int{k("free", "canary"): 30, k("free", "production"): 70},
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

func TestParseObservations(t *testing.T) {
	// HAProxy 2.6.12.
	state := `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 b1 1 s1 127.0.0.1 2 0 30 5 1 1 0 2 0 0 0 0 - 1 - 0 0 - - 0
3 b1 2 s2 127.0.0.1 0 1 70 95 1 1 0 2 0 0 0 0 - 2 - 0 0 - - 0
`
	w, forced, err := parseServersState(state)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[haproxyconf.ServerKey]bool{{Backend: "b1", Server: "s2"}: true}, forced); diff != "" {
		t.Errorf("forced maintenance (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[haproxyconf.ServerKey]int{{Backend: "b1", Server: "s1"}: 30, {Backend: "b1", Server: "s2"}: 70}, w); diff != "" {
		t.Errorf("parseServersState (-want +got):\n%s", diff)
	}
	if _, _, err := parseServersState("Unknown command.\n"); err == nil {
		t.Error("want an error for an answer without a header")
	}
	info := "Name: HAProxy\nVersion: 2.6.12\nPid: 2108\nnode: vm\ndescription: trackrouter:abc123\n"
	if got := parseDescription(info); got != "trackrouter:abc123" {
		t.Errorf("parseDescription: got %q", got)
	}
	if got := parseShowMap("0x560f831029e0 paid b1\n0x560f831029f0 free b2\n\n"); !cmp.Equal(got, map[string]string{"paid": "b1", "free": "b2"}) {
		t.Errorf("parseShowMap: got %v", got)
	}
	if got := parseShowMap("Unknown map identifier. Please use #<id> or <file>.\n"); len(got) != 0 {
		t.Errorf("parseShowMap of an unknown map: got %v", got)
	}
}
