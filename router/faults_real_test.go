package router

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/router/haproxy"
)

// Faults made for real on a real HAProxy. Each test reads the end state back
// from HAProxy itself and checks that the metrics say the same.

// haproxyWeight asks HAProxy for a server's current weight; -1 when it
// does not answer (it may be reloading).
func (h *harness) haproxyWeight(key string) int {
	out, err := h.cli.Command(context.Background(), "@1 get weight "+key)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.Fields(out + " x")[0])
	if err != nil {
		return -1
	}
	return n
}

func (h *harness) metricWeight(backend, server string) float64 {
	return testutil.ToFloat64(h.router.Metrics.Weights.WithLabelValues(backend, server))
}

func (h *harness) applyErrors(reason string) float64 {
	return testutil.ToFloat64(h.router.Metrics.ApplyErrors.WithLabelValues(reason))
}

// waitCanary waits until HAProxy serves canary weight w, the metrics report
// it and the router says in sync.
func (h *harness) waitCanary(w int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("HAProxy at canary %d, in sync", w), func() bool {
		return h.haproxyWeight("canary/canary") == w && h.metricWeight("canary", "canary") == float64(w) &&
			testutil.ToFloat64(h.router.Metrics.InSync) == 1
	})
}

// haproxyPIDs returns the PID of the supervised HAProxy master.
func (h *harness) masterPID() int {
	return h.sup.PID()
}

// TestRealFreezeThenEdit is D2 with SIGSTOP: an edit made while HAProxy is
// frozen is applied once it runs again, and the sidecar is not ready while
// the master socket does not answer.
func TestRealFreezeThenEdit(t *testing.T) {
	h := startHarness(t, nil, func(h *harness) {
		h.router.UnresponsiveAfter = 500 * time.Millisecond
		h.router.RestartAfter = time.Hour
		h.cli.Timeout = 300 * time.Millisecond
	})
	pgid := h.masterPID()
	if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(-pgid, syscall.SIGCONT)
		}
	}()
	h.writeSpec(h.spec(30, 70))
	h.waitFor("not ready while frozen", func() bool { return !h.router.Ready() })
	time.Sleep(time.Second)
	syscall.Kill(-pgid, syscall.SIGCONT)
	stopped = false
	h.waitCanary(30)
	if got := h.send(100, "FREE"); got["canary"] != 30 {
		t.Errorf("after the freeze: want canary 30 of 100, got %v", got)
	}
	if h.rejected() != 0 {
		t.Errorf("a freeze counted %v rejections", h.rejected())
	}
	h.waitFor("ready again", h.router.Ready)
}

// TestRealPortHeldAtStart is D3: HAProxy's first start fails because the
// port is held for a moment; it is started again and serves, and the error
// carries HAProxy's reason.
func TestRealPortHeldAtStart(t *testing.T) {
	var held net.Listener
	h := startHarness(t, func(h *harness) string {
		var err error
		if held, err = net.Listen("tcp", h.addr); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(1500*time.Millisecond, func() { held.Close() })
		return h.spec(5, 95)
	})
	h.waitFor("ready after the port is free", h.router.Ready)
	h.waitCanary(5)
	if got := h.send(100, "FREE"); got["canary"] != 5 {
		t.Errorf("want canary 5 of 100, got %v", got)
	}
	if h.applyErrors("start") < 1 {
		t.Error("the failed start was not counted")
	}
	if !strings.Contains(h.logs.String(), "Address already in use") {
		t.Errorf("the start error does not say why:\n%s", h.logs.String())
	}
}

// wrapper writes an --haproxy-bin script that runs body before haproxy.
func wrapper(t *testing.T, bin, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "haproxy-wrapper")
	script := "#!/bin/sh\n" + body + "\nexec " + bin + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRealSlowStart is D3's DNS variant: HAProxy takes longer to start than
// the old 10 s wait (here 2 s, with the reload timeout at 10 s): it is
// waited for, not started a second time.
func TestRealSlowStart(t *testing.T) {
	h := startHarness(t, nil, func(h *harness) {
		h.sup.Binary = wrapper(t, h.sup.Binary, `[ "$1" = -W ] && sleep 2`)
		h.router.ReloadTimeout = 10 * time.Second
	})
	h.waitCanary(5)
	if n := strings.Count(h.logs.String(), `msg="haproxy started"`); n != 1 {
		t.Errorf("HAProxy was started %d times, want 1:\n%s", n, h.logs.String())
	}
}

// TestRealCheckCannotRun is D2/D7's transient half: haproxy -c that fails
// without a verdict (no [ALERT] line) is retried, and the edit lands.
func TestRealCheckCannotRun(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "fail-once")
	h := startHarness(t, nil, func(h *harness) {
		h.router.Checker = haproxyconfChecker(wrapper(t, haproxytest.Binary(t),
			fmt.Sprintf(`[ "$1" = -c ] && [ -e %[1]s ] && rm %[1]s && exit 1`, marker)))
		h.router.Backoff = 50 * time.Millisecond
	})
	os.WriteFile(marker, nil, 0o644)
	l := startLoad(h.client.URL, "X-Traffic-Group", "FREE", 4)
	spec := strings.Replace(h.spec(30, 70), "  FREE: canary\n", "  FREE: canary\n  BETA: internal\n", 1)
	h.writeSpec(spec)
	h.waitCanary(30)
	if ok, failed, errs := l.finish(); failed > 0 || ok == 0 {
		t.Errorf("under load: %d requests failed of %d: %v", failed, ok+failed, errs)
	}
	if got := h.send(20, "BETA"); got["internal"] != 20 {
		t.Errorf("BETA after the retried check: want 20 on internal, got %v", got)
	}
	if h.applyErrors("check") != 1 || h.rejected() != 0 {
		t.Errorf("want 1 check error and 0 rejections, got %v and %v", h.applyErrors("check"), h.rejected())
	}
}

// TestRealCheckRefuses is D7: a config haproxy -c refuses is counted as a
// rejection with HAProxy's message, changes nothing, and is not checked
// again until the spec changes.
func TestRealCheckRefuses(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "refuse")
	calls := filepath.Join(t.TempDir(), "calls")
	h := startHarness(t, nil, func(h *harness) {
		h.router.Checker = haproxyconfChecker(wrapper(t, haproxytest.Binary(t), fmt.Sprintf(
			`[ "$1" = -c ] && echo >> %s && [ -e %s ] && echo "[ALERT]    (1) : config : parsing [$3:7] : unknown keyword 'bogus'" && exit 1`,
			calls, marker)))
	})
	before := h.configOnDisk()
	os.WriteFile(marker, nil, 0o644)
	countCalls := func() int { b, _ := os.ReadFile(calls); return len(b) }
	checks := countCalls()
	l := startLoad(h.client.URL, "X-Traffic-Group", "FREE", 4)
	spec := strings.Replace(h.spec(5, 95), "  FREE: canary\n", "  FREE: canary\n  BETA: internal\n", 1)
	h.writeSpec(spec)
	h.waitFor("rejection", func() bool { return h.rejected() == 1 })
	if !strings.Contains(h.logs.String(), "line 7: unknown keyword 'bogus'") {
		t.Errorf("the rejection does not carry HAProxy's message:\n%s", h.logs.String())
	}
	// That polls and backoffs never check it again over a minute of the
	// loop: TestStepsRefusedSpecStays, in simulated time.
	if n := countCalls() - checks; n != 1 {
		t.Errorf("the refused config was checked %d times, want 1", n)
	}
	if ok, failed, errs := l.finish(); failed > 0 || ok == 0 {
		t.Errorf("under load: %d requests failed of %d: %v", failed, ok+failed, errs)
	}
	if h.configOnDisk() != before {
		t.Error("a refused config reached the file")
	}
	if got := h.send(20, "BETA"); got["internal"] != 0 {
		t.Errorf("a refused config reached HAProxy: %v", got)
	}
	if !h.router.Ready() {
		t.Error("not ready while serving the last good config")
	}
	os.Remove(marker)
	h.writeSpec(strings.Replace(spec, "BETA", "GAMMA", 1))
	h.waitFor("the next edit applied", func() bool { return strings.Contains(string(h.router.Applied()), "GAMMA") })
}

// TestRealSecondSidecar is D5: a second sidecar on the same config exits
// with a clear error, and a second HAProxy start on a live master socket is
// refused without removing the socket.
func TestRealSecondSidecar(t *testing.T) {
	h := newHarness(t)
	before, err := h.cli.ShowProc(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The harness runs the Router directly: take the lock its Run would.
	release, err := lockConfig(h.router.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cfg := Config{ServiceFile: h.specPath, HAProxyConfig: h.router.ConfigPath, MasterSocket: h.cli.Socket,
		RunHAProxy: true, HAProxyBin: h.sup.Binary, Bind: h.addr}
	err = Run(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "another trackrouter (pid "+strconv.Itoa(os.Getpid())+") manages") {
		t.Errorf("second sidecar: want an error naming the first one's pid, got %v", err)
	}
	// Its own config but the same master socket: refused too.
	cfg.HAProxyConfig = filepath.Join(t.TempDir(), "haproxy.cfg")
	releaseSocket, err := lockConfig(h.cli.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseSocket()
	err = Run(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), h.cli.Socket+".lock is locked") {
		t.Errorf("second sidecar on the same socket: want a lock error naming the socket, got %v", err)
	}
	second := &haproxy.Supervisor{Binary: h.sup.Binary, Config: h.router.ConfigPath, Socket: h.cli.Socket, Log: h.router.Log}
	if err := second.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "answers: another HAProxy runs on it") {
		t.Errorf("second HAProxy on a live socket: want a refusal, got %v", err)
		second.Kill()
	}
	after, err := h.cli.ShowProc(context.Background())
	if err != nil || after.MasterPID != before.MasterPID {
		t.Errorf("the first HAProxy's socket no longer answers for it: %+v %v", after, err)
	}
	h.writeSpec(h.spec(50, 50))
	h.waitCanary(50)
}

// TestRealMasterKilledRestartedWithEdit kills HAProxy (master and worker)
// right after an edit: the exit is noticed at once and HAProxy is started
// on the edited spec.
func TestRealMasterKilledRestartedWithEdit(t *testing.T) {
	h := newHarness(t)
	pid := h.masterPID()
	h.writeSpec(h.spec(40, 60))
	syscall.Kill(-pid, syscall.SIGKILL)
	h.waitFor("a new master", func() bool { return h.masterPID() != pid })
	h.waitCanary(40)
	if got := h.send(100, "FREE"); got["canary"] != 40 {
		t.Errorf("after the restart: want canary 40 of 100, got %v", got)
	}
}

func haproxyconfChecker(bin string) haproxyconf.Checker { return haproxyconf.Checker{Binary: bin} }

// TestRealForcedMaintenanceRepaired: a track put in maintenance by hand on
// HAProxy's socket is set ready again, and FREE traffic splits as the spec says.
func TestRealForcedMaintenanceRepaired(t *testing.T) {
	h := newHarness(t)
	h.writeSpec(h.spec(50, 50))
	h.waitCanary(50)
	if out, err := h.cli.Command(context.Background(), "@1 set server canary/canary state maint"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("set maint: %q %v", out, err)
	}
	h.waitFor("canary serving again", func() bool {
		got, err := h.client.Send(20, "FREE")
		return err == nil && got["canary"] == 10
	})
	h.waitFor("the repair applied", func() bool {
		return strings.Contains(h.router.LastApplied().Why, "canary/canary forced maint/drain->ready")
	})
}

// TestRealStartFromDisk is a sidecar restarted while the API is down: no
// spec arrives, and HAProxy starts on the config an earlier run wrote.
func TestRealStartFromDisk(t *testing.T) {
	first := newHarness(t)
	first.writeSpec(first.spec(30, 70))
	first.waitCanary(30)
	first.stop()

	log := slog.New(slog.NewTextHandler(first.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sup := &haproxy.Supervisor{Binary: first.sup.Binary, Config: first.router.ConfigPath, Socket: first.cli.Socket, Log: log, Output: first.logs}
	r := &Router{ConfigPath: first.router.ConfigPath, Render: first.router.Render, Checker: first.router.Checker,
		HAProxy: first.cli, Process: sup, Metrics: NewMetrics(), Log: log, StartFromDisk: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }() // no source: nothing is ever submitted
	defer func() { cancel(); <-done; sup.Stop(5 * time.Second) }()
	var got map[string]int
	first.waitFor("traffic from the config on disk", func() bool {
		var err error
		got, err = first.client.Send(100, "FREE")
		return err == nil
	})
	if got["canary"] != 30 {
		t.Errorf("want the last good split, canary 30 of 100, got %v", got)
	}
}
