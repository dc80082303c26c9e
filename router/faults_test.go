package router

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/router/haproxy"
	"github.com/trackrouter/trackrouter/weights"
)

// The failure paths of the reconcile loop on the fake HAProxy. Each test
// asserts the end state the fake runs, and that the metrics say the same.

func metric(g *fakeRig, name string) float64 {
	m := g.r.Metrics
	switch name {
	case "in_sync":
		return testutil.ToFloat64(m.InSync)
	case "rejected":
		return testutil.ToFloat64(m.Rejected)
	case "canary_weight":
		return testutil.ToFloat64(m.Weights.WithLabelValues("free", "canary"))
	case "reloads":
		return testutil.ToFloat64(m.Reloads.WithLabelValues("success"))
	case "reload_failures":
		return testutil.ToFloat64(m.Reloads.WithLabelValues("failure"))
	}
	reason, ok := strings.CutPrefix(name, "errors_")
	if !ok {
		panic(name)
	}
	return testutil.ToFloat64(m.ApplyErrors.WithLabelValues(reason))
}

// synced waits until the fake runs canary weight w and the router reports
// it, in sync.
func (g *fakeRig) synced(w int) {
	g.t.Helper()
	g.waitFor(fmt.Sprintf("in sync at canary %d", w), func() bool {
		return g.canary() == w && metric(g, "canary_weight") == float64(w) && metric(g, "in_sync") == 1
	})
}

// TestFaultConfigUnwritable is D1: with the config directory full, a weight
// edit changes nothing in HAProxy (the file goes first), the metrics keep
// saying what HAProxy runs, and once space is back the edit lands; an edit
// back to the old weights then is not "unchanged".
func TestFaultConfigUnwritable(t *testing.T) {
	g := startFake(t, true)
	g.submit(5)
	g.synced(5)
	g.files.setErr(errDiskFull)
	g.submit(30)
	g.waitFor("a write failure", func() bool { return metric(g, "errors_write") >= 2 })
	if g.canary() != 5 || metric(g, "canary_weight") != 5 || metric(g, "in_sync") != 0 {
		t.Errorf("disk full: HAProxy runs canary %d, metrics say %v (in sync %v); want 5, 5, 0", g.canary(), metric(g, "canary_weight"), metric(g, "in_sync"))
	}
	if !g.r.Ready() {
		t.Error("not ready while HAProxy serves the last good config and the write is retried")
	}
	g.files.setErr(nil)
	g.synced(30)
	g.submit(5)
	g.synced(5)
	if n := metric(g, "rejected"); n != 0 {
		t.Errorf("a full disk counted %v rejections; it is not the spec's fault", n)
	}
}

// TestFaultTransient is D2: failures that say nothing about the config are
// retried until the edit lands, and none counts as a rejection.
func TestFaultTransient(t *testing.T) {
	tests := []struct {
		name   string
		fault  func(g *fakeRig)
		clear  func(g *fakeRig)
		reason string
		edit   func(g *fakeRig) // default: a weight edit to 30
	}{
		{
			name: "master socket times out (HAProxy frozen)",
			fault: func(g *fakeRig) {
				g.hap.set(func(f *fakeHAProxy) { f.observeErr = errors.New("read unix master.sock: i/o timeout") })
			},
			clear:  func(g *fakeRig) { g.hap.set(func(f *fakeHAProxy) { f.observeErr = nil }) },
			reason: "unreachable",
		},
		{
			name: "runtime API reset (master re-executing)",
			fault: func(g *fakeRig) {
				g.hap.set(func(f *fakeHAProxy) { f.runtimeErr = errors.New("connection reset by peer") })
			},
			clear:  func(g *fakeRig) { g.hap.set(func(f *fakeHAProxy) { f.runtimeErr = nil }) },
			reason: "runtime",
		},
		{
			name: "haproxy -c could not run",
			fault: func(g *fakeRig) {
				g.checker.mu.Lock()
				g.checker.answers = []error{errors.New("fork/exec haproxy: resource temporarily unavailable"), errors.New("text file busy")}
				g.checker.mu.Unlock()
			},
			clear:  func(g *fakeRig) {},
			reason: "check",
			edit: func(g *fakeRig) {
				g.submitRaw(strings.Replace(fmt.Sprintf(fakeSpec, 30, 70), "  FREE: free\n", "  FREE: free\n  BETA: free\n", 1))
			},
		},
		{
			name:   "reload refused by the master, then accepted",
			fault:  func(g *fakeRig) { g.hap.set(func(f *fakeHAProxy) { f.failReloads = 2 }) },
			clear:  func(g *fakeRig) {},
			reason: "reload",
			edit: func(g *fakeRig) {
				g.submitRaw(strings.Replace(fmt.Sprintf(fakeSpec, 30, 70), "  FREE: free\n", "  FREE: free\n  BETA: free\n", 1))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := startFake(t, true)
			g.submit(5)
			g.synced(5)
			stamp, _ := g.hap.state()
			tc.fault(g)
			if tc.edit != nil {
				tc.edit(g)
			} else {
				g.submit(30)
			}
			g.waitFor("the fault seen", func() bool { return metric(g, "errors_"+tc.reason) >= 1 })
			time.Sleep(50 * time.Millisecond)
			tc.clear(g)
			g.synced(30)
			if n := metric(g, "rejected"); n != 0 {
				t.Errorf("%v rejections for a transient fault", n)
			}
			if tc.edit != nil {
				if now, _ := g.hap.state(); now == stamp {
					t.Errorf("the structural edit did not reach HAProxy: it still runs %s", now)
				}
			}
		})
	}
}

// TestFaultStartFails is D3: a supervised HAProxy that exits at start (a
// port held for a moment) is started again with backoff until it runs.
func TestFaultStartFails(t *testing.T) {
	g := startFake(t, true, func(g *fakeRig) { g.hap.failStarts = 3 })
	g.submit(5)
	g.synced(5)
	if got := metric(g, "errors_start"); got != 3 {
		t.Errorf("want 3 failed starts counted, got %v", got)
	}
	if !strings.Contains(g.logs.String(), "Address already in use") {
		t.Errorf("the failed start's error does not carry HAProxy's alert:\n%s", g.logs.String())
	}
	g.waitFor("ready", g.r.Ready)
}

// TestFaultSlowLoad is D4: a reload whose load outlasts a confirmation
// deadline (slow DNS at load time) is confirmed by the stamp when it lands,
// never answered with the old file or a second reload.
func TestFaultSlowLoad(t *testing.T) {
	g := startFake(t, true)
	g.submit(5)
	g.synced(5)
	g.hap.set(func(f *fakeHAProxy) { f.slowLoad = 40 }) // ~40 polls, 0.8 s at 20 ms
	g.submitRaw(strings.Replace(fmt.Sprintf(fakeSpec, 50, 50), "  FREE: free\n", "  FREE: free\n  BETA: free\n", 1))
	g.synced(50)
	if n := g.hap.count(func(f *fakeHAProxy) int { return f.reloads }); n != 1 {
		t.Errorf("want exactly 1 reload, got %d", n)
	}
	if metric(g, "errors_reload") != 0 || metric(g, "errors_unreachable") != 0 {
		t.Errorf("a slow load counted as an error: reload %v, unreachable %v", metric(g, "errors_reload"), metric(g, "errors_unreachable"))
	}
	if !g.r.Ready() {
		t.Error("not ready after the slow load landed")
	}
}

// TestFaultReloadTimeout: a reload that has not landed within
// ReloadTimeout (the master re-executes and does not answer: a slow DNS at
// load time) is counted as a reload error and logged, not sent again while
// the master loads (its socket does not answer: a second reload could not
// reach it), and not in sync meanwhile; when it lands late it is taken for
// what it is: the new config confirmed by its stamp, in sync, ready, and
// no reload follows it.
func TestFaultReloadTimeout(t *testing.T) {
	g := startFake(t, true, func(g *fakeRig) { g.r.ReloadTimeout = 100 * time.Millisecond })
	g.submit(5)
	g.synced(5)
	reloads := func() int { return g.hap.count(func(f *fakeHAProxy) int { return f.reloads }) }
	before := reloads()
	g.hap.set(func(f *fakeHAProxy) { f.slowLoad = 1000 })
	g.submitRaw(strings.Replace(fmt.Sprintf(fakeSpec, 50, 50), "  FREE: free\n", "  FREE: free\n  BETA: free\n", 1))
	g.waitFor("the reload given up", func() bool { return metric(g, "errors_reload") >= 1 })
	if !strings.Contains(g.logs.String(), "HAProxy does not answer") {
		t.Errorf("the timeout is not logged with its cause:\n%s", g.logs.String())
	}
	// The master still loads: 20 more attempts to observe it, no reload.
	loading := g.hap.count(func(f *fakeHAProxy) int { return f.loading })
	g.waitFor("20 more observations", func() bool { return g.hap.count(func(f *fakeHAProxy) int { return f.loading }) <= loading-20 })
	if n := reloads() - before; n != 1 {
		t.Errorf("%d reloads sent while the first one loads, want 1", n)
	}
	if metric(g, "in_sync") != 0 {
		t.Error("in sync while the new config has not landed")
	}
	g.hap.set(func(f *fakeHAProxy) { f.slowLoad, f.loading = 0, 1 })
	g.synced(50)
	if stamp, _ := g.hap.state(); !strings.HasPrefix(stamp, haproxyconf.StampPrefix) || !g.r.Ready() {
		t.Errorf("after the late landing: stamp %q, ready %v", stamp, g.r.Ready())
	}
	ran := reloads()
	polls := g.hap.count(func(f *fakeHAProxy) int { return f.observes })
	g.waitFor("20 more polls", func() bool { return g.hap.count(func(f *fakeHAProxy) int { return f.observes }) >= polls+20 })
	if n := reloads() - ran; n != 0 {
		t.Errorf("%d reloads after the late one landed and ran", n)
	}
}

// TestCheckRefusal is D7: haproxy -c's verdict rejects the spec (metric,
// Event with HAProxy's message), HAProxy keeps the last good config, and the
// refused spec is not checked again until it changes.
func TestCheckRefusal(t *testing.T) {
	g := startFake(t, true)
	g.submit(5)
	g.synced(5)
	stamp, _ := g.hap.state()
	refusal := &haproxyconf.CheckError{Problems: []haproxyconf.ConfigError{{Line: 12, Msg: "unknown keyword 'x'"}}}
	g.checker.mu.Lock()
	g.checker.answers = []error{refusal}
	g.checker.mu.Unlock()
	checks := g.checker.count()
	beta := strings.Replace(fmt.Sprintf(fakeSpec, 5, 95), "  FREE: free\n", "  FREE: free\n  BETA: free\n", 1)
	g.submitRaw(beta)
	g.waitFor("the rejection", func() bool { return metric(g, "rejected") == 1 })
	if diff := cmp.Diff([]string{"haproxy -c: haproxy -c refused the config: line 12: unknown keyword 'x'"}, g.rejecter.list()); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
	// That the same config with other weights stays refused, checked once,
	// over a minute of the loop: TestStepsRefusedSpecStays, in simulated
	// time.
	if now, _ := g.hap.state(); now != stamp || g.canary() != 5 {
		t.Errorf("a refused config reached HAProxy: stamp %s (was %s), canary %d", now, stamp, g.canary())
	}
	if n := g.checker.count() - checks; n != 1 {
		t.Errorf("the refused config was checked %d times, want 1", n)
	}
	if !g.r.Ready() || metric(g, "in_sync") != 0 {
		t.Errorf("while the spec is refused: want ready (last good) and not in sync; ready %v, in sync %v", g.r.Ready(), metric(g, "in_sync"))
	}
	g.submit(20) // fixed
	g.synced(20)
}

// TestUnresponsive: a master socket silent longer than UnresponsiveAfter
// makes the sidecar not ready, and one silent longer than RestartAfter
// gets a supervised HAProxy killed and started again.
func TestUnresponsive(t *testing.T) {
	g := startFake(t, true, func(g *fakeRig) {
		g.r.UnresponsiveAfter = 100 * time.Millisecond
		g.r.RestartAfter = 300 * time.Millisecond
	})
	g.submit(5)
	g.synced(5)
	g.hap.set(func(f *fakeHAProxy) { f.observeErr = errors.New("i/o timeout") })
	g.waitFor("not ready", func() bool { return !g.r.Ready() })
	g.waitFor("restart", func() bool { return metric(g, "errors_restart") == 1 })
	g.hap.set(func(f *fakeHAProxy) { f.observeErr = nil })
	g.synced(5)
	g.waitFor("ready again", g.r.Ready)
	if n := g.hap.count(func(f *fakeHAProxy) int { return f.starts }); n != 2 {
		t.Errorf("want 2 starts, got %d", n)
	}
}

// TestRuntimeFailureIsNoReload is R8: a weight edit whose Runtime API call
// fails is retried at runtime, not turned into a reload.
func TestRuntimeFailureIsNoReload(t *testing.T) {
	g := startFake(t, false)
	g.submit(5)
	g.synced(5)
	reloads := g.hap.count(func(f *fakeHAProxy) int { return f.reloads })
	g.hap.set(func(f *fakeHAProxy) { f.runtimeErr = errors.New("connection reset by peer") })
	g.submit(40)
	g.waitFor("the failure", func() bool { return metric(g, "errors_runtime") >= 1 })
	g.hap.set(func(f *fakeHAProxy) { f.runtimeErr = nil })
	g.synced(40)
	if n := g.hap.count(func(f *fakeHAProxy) int { return f.reloads }); n != reloads {
		t.Errorf("a weight edit reloaded: %d -> %d reloads", reloads, n)
	}
}

// TestDriftIsRepaired: a weight set by hand on HAProxy's socket is set back.
func TestDriftIsRepaired(t *testing.T) {
	g := startFake(t, false)
	g.submit(5)
	g.synced(5)
	g.hap.set(func(f *fakeHAProxy) { f.weights[haproxyconf.ServerKey{Backend: "free", Server: "canary"}] = 77 })
	g.synced(5)
	g.waitFor("the repair applied with its reason", func() bool {
		a := g.r.LastApplied()
		return a.How == "runtime" && a.Why == "weights free/canary 77->5"
	})
}

func beta(canary int) string {
	return strings.Replace(fmt.Sprintf(fakeSpec, canary, 100-canary), "  FREE: free\n", "  FREE: free\n  BETA: free\n", 1)
}

// TestHungCheckKeepsSupervising: while haproxy -c hangs (name resolution at
// check time), an HAProxy that exits is started again at once, on the last
// good config; the spec lands once the check answers.
func TestHungCheckKeepsSupervising(t *testing.T) {
	g := startFake(t, true)
	g.submit(5)
	g.synced(5)
	good, _ := g.hap.state()
	hang := make(chan struct{})
	g.checker.mu.Lock()
	g.checker.hang = hang
	g.checker.mu.Unlock()
	g.submitRaw(beta(20))
	time.Sleep(50 * time.Millisecond)
	g.hap.Kill()
	g.waitFor("HAProxy started again on the last good config", func() bool {
		stamp, _ := g.hap.state()
		return g.hap.Running() && stamp == good && g.hap.count(func(f *fakeHAProxy) int { return f.starts }) == 2
	})
	close(hang)
	g.synced(20)
	if now, _ := g.hap.state(); now == good {
		t.Error("the checked spec did not reach HAProxy")
	}
}

// TestFailedLoadStartsOnLastGood: a config HAProxy failed to load (a port
// in use) is taken off the file, so an HAProxy restart in between starts on
// the last good config; the spec is retried and lands.
func TestFailedLoadStartsOnLastGood(t *testing.T) {
	g := startFake(t, true, func(g *fakeRig) { g.r.Backoff = 300 * time.Millisecond })
	g.submit(5)
	g.synced(5)
	good, _ := g.hap.state()
	goodCfg, _ := g.files.ReadFile("/cfg/haproxy.cfg")
	g.hap.set(func(f *fakeHAProxy) { f.failReloads = 1 })
	g.submitRaw(beta(20))
	g.waitFor("the failed reload", func() bool { return metric(g, "reload_failures") == 1 })
	g.waitFor("the file back to the last good config", func() bool {
		b, _ := g.files.ReadFile("/cfg/haproxy.cfg")
		return string(b) == string(goodCfg)
	})
	g.hap.Kill()
	g.waitFor("started on the last good config", func() bool {
		stamp, _ := g.hap.state()
		return g.hap.Running() && stamp == good
	})
	g.synced(20)
}

// TestFrozenDuringReloadNotReady: a master that accepts connections and
// never answers while a reload is pending is frozen, not loading: not ready
// after UnresponsiveAfter, restarted after RestartAfter.
func TestFrozenDuringReloadNotReady(t *testing.T) {
	g := startFake(t, true, func(g *fakeRig) {
		g.r.UnresponsiveAfter = 100 * time.Millisecond
		g.r.RestartAfter = 300 * time.Millisecond
	})
	g.submit(5)
	g.synced(5)
	g.hap.set(func(f *fakeHAProxy) { f.slowLoad = 1_000_000 })
	g.submitRaw(beta(5))
	g.waitFor("the reload pending", func() bool { return g.hap.count(func(f *fakeHAProxy) int { return f.reloads }) == 1 })
	g.hap.set(func(f *fakeHAProxy) { f.observeErr = fmt.Errorf("read unix master.sock: %w", os.ErrDeadlineExceeded) })
	g.waitFor("not ready", func() bool { return !g.r.Ready() })
	g.waitFor("the restart", func() bool { return metric(g, "errors_restart") == 1 })
	g.hap.set(func(f *fakeHAProxy) { f.observeErr, f.slowLoad = nil, 0 })
	g.synced(5)
}

// TestSocketGoneReexecs: a deleted master socket is created again with a
// SIGUSR2 reload, not by killing a healthy HAProxy.
func TestSocketGoneReexecs(t *testing.T) {
	g := startFake(t, true, func(g *fakeRig) { g.r.RestartAfter = time.Hour })
	g.submit(5)
	g.synced(5)
	g.hap.set(func(f *fakeHAProxy) {
		f.observeErr = fmt.Errorf("%w: dial unix master.sock: %w", haproxy.ErrUnavailable, syscall.ENOENT)
	})
	g.waitFor("SIGUSR2", func() bool { return g.hap.count(func(f *fakeHAProxy) int { return f.reexecs }) == 1 })
	g.submit(30)
	g.synced(30)
	if n := g.hap.count(func(f *fakeHAProxy) int { return f.starts }); n != 1 {
		t.Errorf("HAProxy was started %d times; want 1 (no kill)", n)
	}
}

// TestForcedMaintenanceRepaired: a server put in maintenance by hand on the
// Runtime API is drift: set ready again, and not in sync meanwhile.
func TestForcedMaintenanceRepaired(t *testing.T) {
	g := startFake(t, false)
	g.submit(5)
	g.synced(5)
	g.hap.set(func(f *fakeHAProxy) {
		f.forced = map[haproxyconf.ServerKey]bool{{Backend: "free", Server: "canary"}: true}
	})
	g.waitFor("maintenance ended", func() bool {
		return g.hap.count(func(f *fakeHAProxy) int { return len(f.forced) }) == 0 && metric(g, "in_sync") == 1
	})
}

// recordingReporter keeps the reports the router sends.
type recordingReporter struct {
	mu   sync.Mutex
	last *contract.Report
}

func (r *recordingReporter) Report(rep *contract.Report) { r.mu.Lock(); r.last = rep; r.mu.Unlock() }

func (r *recordingReporter) get() *contract.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// TestServersDownReported: a server HAProxy sends no traffic to (its
// checks fail, its name did not resolve) is in the pod's report and its
// trackrouter_server_up is 0; once it is back, both say so. Routing is
// not touched: it is HAProxy's own verdict, not the spec's.
func TestServersDownReported(t *testing.T) {
	rep := &recordingReporter{}
	g := startFake(t, true, func(g *fakeRig) { g.r.Reporter = rep })
	g.submit(5)
	g.synced(5)
	prod := haproxyconf.ServerKey{Backend: "all", Server: "production"}
	up := func() float64 { return testutil.ToFloat64(g.r.Metrics.Up.WithLabelValues(prod.Backend, prod.Server)) }
	if up() != 1 {
		t.Fatalf("trackrouter_server_up of %s is %v before any fault, want 1", prod, up())
	}
	g.hap.mu.Lock()
	g.hap.down = map[haproxyconf.ServerKey]string{prod: haproxy.ServerDown}
	g.hap.mu.Unlock()
	g.waitFor("the server shown down", func() bool {
		r := rep.get()
		return r != nil && r.Down[prod.Backend][prod.Server] == haproxy.ServerDown && up() == 0
	})
	if r := rep.get(); !r.InSync {
		t.Errorf("a server down made the report out of sync: %+v", r)
	}
	g.hap.mu.Lock()
	g.hap.down = nil
	g.hap.mu.Unlock()
	g.waitFor("the server shown up again", func() bool {
		r := rep.get()
		return r != nil && r.Down == nil && up() == 1
	})
}

// TestUnreadableSourceIsNoRejection: a spec source that cannot be read (a
// missing file, a symlink loop, a deleted ConfigMap) is not a rejected spec:
// it counts as a read error, changes nothing in HAProxy, and once it has
// lasted UnreadableAfter the metric and the pod's report say so; a readable
// spec clears both.
func TestUnreadableSourceIsNoRejection(t *testing.T) {
	rep := &recordingReporter{}
	g := startFake(t, true, func(g *fakeRig) {
		g.r.Reporter = rep
		g.r.UnreadableAfter = 50 * time.Millisecond
	})
	g.submit(5)
	g.synced(5)
	readErr := errors.New("read spec: open /spec/service.yaml: too many levels of symbolic links")
	g.r.Submit(Update{Source: weights.Source{File: "/spec/service.yaml"}, Err: readErr})
	g.waitFor("the read error counted", func() bool { return testutil.ToFloat64(g.r.Metrics.ReadErrors) == 1 })
	g.waitFor("the source shown unreadable", func() bool {
		r := rep.get()
		return testutil.ToFloat64(g.r.Metrics.Unreadable) == 1 && r != nil && r.Unreadable != nil && r.Unreadable.Message == readErr.Error()
	})
	if n := metric(g, "rejected"); n != 0 {
		t.Errorf("an unreadable source counted %v rejections; nobody wrote a bad spec", n)
	}
	if strings.Contains(g.logs.String(), "spec rejected") || len(g.rejecter.list()) != 0 {
		t.Errorf("an unreadable source was reported as a rejected spec: %v", g.rejecter.list())
	}
	if g.canary() != 5 || metric(g, "in_sync") != 1 || !g.r.Ready() {
		t.Errorf("an unreadable source changed what HAProxy serves: canary %d, in sync %v, ready %v", g.canary(), metric(g, "in_sync"), g.r.Ready())
	}
	g.submit(20)
	g.synced(20)
	g.waitFor("the source readable again", func() bool {
		r := rep.get()
		return testutil.ToFloat64(g.r.Metrics.Unreadable) == 0 && r != nil && r.Unreadable == nil
	})
}
