package router

import (
	"testing"

	"github.com/google/go-cmp/cmp"
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
