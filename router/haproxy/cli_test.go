package haproxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/haproxyconf"
)

func TestParseShowProc(t *testing.T) {
	// HAProxy 2.6.12, after two reloads with an old worker still finishing.
	out := `#<PID>          <type>          <reloads>       <uptime>        <version>
2244            master          2 [failed: 1]   0d00h01m02s     2.6.12-1+deb12u4
# workers
2257            worker          0               0d00h00m00s     2.6.12-1+deb12u4
# old workers
2250            worker          1               0d00h00m10s     2.6.12-1+deb12u4
# programs

`
	got, err := parseShowProc(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Proc{MasterPID: 2244, Reloads: 2, FailedReloads: 1, Workers: []int{2257}, OldWorkers: []int{2250}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseShowProc (-want +got):\n%s", diff)
	}
	if _, err := parseShowProc("Unknown command.\n"); err == nil {
		t.Error("want an error for an answer without a master line")
	}
}

func TestParseObservations(t *testing.T) {
	// HAProxy 2.6.12; s5 drained by "set server b1/s5 state drain" (admin
	// state 8, measured).
	state := `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 b1 1 s1 127.0.0.1 2 0 30 5 1 1 0 2 0 0 0 0 - 1 - 0 0 - - 0
3 b1 2 s2 127.0.0.1 0 1 70 95 1 1 0 2 0 0 0 0 - 2 - 0 0 - - 0
3 b1 3 s3 127.0.0.1 0 0 5 5 1 1 0 2 0 0 0 0 - 2 - 0 0 - - 0
3 b1 4 s4 - 0 32 5 5 1 1 0 2 0 0 0 0 - 2 - 0 0 - - 0
3 b1 5 s5 127.0.0.1 2 8 5 5 1 1 0 2 0 0 0 0 - 2 - 0 0 - - 0
`
	got, err := parseServersState(state)
	if err != nil {
		t.Fatal(err)
	}
	k := func(s string) haproxyconf.ServerKey { return haproxyconf.ServerKey{Backend: "b1", Server: s} }
	if diff := cmp.Diff(map[haproxyconf.ServerKey]bool{k("s2"): true, k("s5"): true}, got.forced); diff != "" {
		t.Errorf("forced maintenance (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[haproxyconf.ServerKey]int{k("s1"): 30, k("s2"): 70, k("s3"): 5, k("s4"): 5, k("s5"): 5}, got.weights); diff != "" {
		t.Errorf("parseServersState (-want +got):\n%s", diff)
	}
	// s1 up, s2 in forced maintenance, s3 down by its checks, s4 without
	// an address, s5 draining (up: it serves its sessions).
	if diff := cmp.Diff(map[haproxyconf.ServerKey]string{k("s2"): ServerMaint, k("s3"): ServerDown, k("s4"): ServerNoAddress}, got.down); diff != "" {
		t.Errorf("servers taking no traffic (-want +got):\n%s", diff)
	}
	if _, err := parseServersState("Unknown command.\n"); err == nil {
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
