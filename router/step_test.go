package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/weights"
)

// stepRig drives the reconcile loop by hand on the fakes, in simulated
// time: each step advances the clock by the wait the step asked for, and a
// background haproxy -c is waited for, so a test runs the same steps on
// every machine and proves that nothing happens without sleeping.
type stepRig struct {
	t       *testing.T
	r       *Router
	hap     *fakeHAProxy
	files   *fakeFiles
	checker *fakeChecker
	logs    *haproxytest.SyncBuffer
	now     time.Time
}

func newStepRig(t *testing.T) *stepRig {
	files := &fakeFiles{data: map[string][]byte{}}
	g := &stepRig{t: t, files: files, checker: &fakeChecker{}, logs: &haproxytest.SyncBuffer{}, now: t0,
		hap: newFake(files, "/cfg/haproxy.cfg", "")}
	g.r = &Router{ConfigPath: "/cfg/haproxy.cfg", Checker: g.checker, HAProxy: g.hap, Process: g.hap, Files: files,
		Metrics: NewMetrics(), Log: slog.New(slog.NewTextHandler(io.MultiWriter(g.logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Rejecter: &recordingRejecter{}, Clock: func() time.Time { return g.now }}
	g.r.init()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("router log:\n%s", g.logs.String())
		}
	})
	return g
}

// submit hands the loop a spec, as Run does when a source sends one.
func (g *stepRig) submit(data string) {
	g.r.accept(context.Background(), &Update{Data: []byte(data), Source: weights.Source{File: "service.yaml"}})
}

// run steps the loop for d of simulated time. As in Run, a step follows
// at once when haproxy -c answers, else after the wait the step asked for.
func (g *stepRig) run(d time.Duration) {
	g.t.Helper()
	end := g.now.Add(d)
	for g.now.Before(end) {
		wait := g.r.step(context.Background())
		if g.r.checking != nil {
			select {
			case res := <-g.r.checkDone:
				g.r.checkedResult(res)
				continue
			case <-time.After(10 * time.Second):
				g.t.Fatal("haproxy -c did not answer")
			}
		}
		g.now = g.now.Add(max(wait, time.Millisecond))
	}
}

func (g *stepRig) canary() int {
	_, w := g.hap.state()
	return w[haproxyconf.ServerKey{Backend: "free", Server: "canary"}]
}

// TestStepsRefusedSpecStays: a spec haproxy -c refuses, then the same
// config with other weights: over a minute of the loop nothing reaches
// HAProxy, the config is checked once, and the sidecar stays ready on the
// last good config (what TestCheckRefusal could only show by sleeping).
func TestStepsRefusedSpecStays(t *testing.T) {
	g := newStepRig(t)
	g.submit(fmt.Sprintf(fakeSpec, 5, 95))
	g.run(time.Second)
	stamp, _ := g.hap.state()
	if g.canary() != 5 || !g.r.Ready() {
		t.Fatalf("the first spec: canary %d, ready %v", g.canary(), g.r.Ready())
	}
	g.checker.answers = []error{&haproxyconf.CheckError{Problems: []haproxyconf.ConfigError{{Line: 12, Msg: "unknown keyword 'x'"}}}}
	checks := g.checker.count()
	beta := strings.Replace(fmt.Sprintf(fakeSpec, 5, 95), "  FREE: free\n", "  FREE: free\n  BETA: free\n", 1)
	g.submit(beta)
	g.run(time.Second)
	g.submit(strings.Replace(beta, "canary: 5, production: 95", "canary: 6, production: 94", 1))
	g.run(time.Minute)
	if now, _ := g.hap.state(); now != stamp || g.canary() != 5 {
		t.Errorf("a refused config reached HAProxy: stamp %s (was %s), canary %d", now, stamp, g.canary())
	}
	if n := g.checker.count() - checks; n != 1 {
		t.Errorf("the refused config was checked %d times in a minute, want 1", n)
	}
	if !g.r.Ready() || metric(&fakeRig{r: g.r}, "in_sync") != 0 || metric(&fakeRig{r: g.r}, "rejected") != 1 {
		t.Errorf("while the spec is refused: want ready on the last good config, not in sync, 1 rejection")
	}
}

// TestStepsWeightEditOneLook: a weight edit is applied and confirmed in one
// step with one look at HAProxy (its answers to get weight confirm it); a
// server forced to maintenance by hand is set ready and confirmed by a
// second look, since "set server state" answers nothing to check.
func TestStepsWeightEditOneLook(t *testing.T) {
	g := newStepRig(t)
	g.submit(fmt.Sprintf(fakeSpec, 5, 95))
	g.run(time.Second)
	observes := func() int { return g.hap.count(func(f *fakeHAProxy) int { return f.observes }) }

	g.submit(fmt.Sprintf(fakeSpec, 30, 70))
	before := observes()
	g.r.step(context.Background())
	if g.canary() != 30 || !strings.Contains(string(g.r.Applied()), "weight 30") || metric(&fakeRig{r: g.r}, "in_sync") != 1 {
		t.Errorf("after one step: canary %d, in sync %v, applied has weight 30: %v", g.canary(),
			metric(&fakeRig{r: g.r}, "in_sync"), strings.Contains(string(g.r.Applied()), "weight 30"))
	}
	if n := observes() - before; n != 1 {
		t.Errorf("%d looks at HAProxy for a weight edit, want 1", n)
	}

	production := haproxyconf.ServerKey{Backend: "free", Server: "production"}
	g.hap.set(func(f *fakeHAProxy) { f.forced = map[haproxyconf.ServerKey]bool{production: true} })
	g.submit(fmt.Sprintf(fakeSpec, 40, 60))
	g.r.step(context.Background())
	if metric(&fakeRig{r: g.r}, "in_sync") != 0 {
		t.Error("in sync before a look confirmed the forced server ready")
	}
	g.r.step(context.Background())
	if g.canary() != 40 || metric(&fakeRig{r: g.r}, "in_sync") != 1 {
		t.Errorf("after the second look: canary %d, in sync %v", g.canary(), metric(&fakeRig{r: g.r}, "in_sync"))
	}
}

// TestStepsBackoff: a reload the master keeps refusing is retried at 1 s,
// 2 s, 4 s, ... up to 30 s apart, not in a busy loop, and lands once the
// master accepts.
func TestStepsBackoff(t *testing.T) {
	g := newStepRig(t)
	g.submit(fmt.Sprintf(fakeSpec, 5, 95))
	g.run(time.Second)
	reloads := g.hap.count(func(f *fakeHAProxy) int { return f.reloads })
	g.hap.set(func(f *fakeHAProxy) { f.failReloads = 1000 })
	g.submit(strings.Replace(fmt.Sprintf(fakeSpec, 5, 95), "  FREE: free\n", "  FREE: free\n  BETA: free\n", 1))
	g.run(2 * time.Minute)
	// 1+2+4+8+16+30+30+30 s: 8 attempts fit in two minutes, give or take
	// the first and the last.
	if n := g.hap.count(func(f *fakeHAProxy) int { return f.reloads }) - reloads; n < 7 || n > 9 {
		t.Errorf("%d reloads in two minutes of failures, want about 8 (backoff 1s doubling to 30s)", n)
	}
	if err := g.r.NotReady(); err != nil {
		t.Errorf("not ready while the last good config serves: %v", err)
	}
	g.hap.set(func(f *fakeHAProxy) { f.failReloads = 0 })
	g.run(31 * time.Second)
	if metric(&fakeRig{r: g.r}, "in_sync") != 1 {
		t.Error("the spec did not land once the master accepted reloads")
	}
}

// TestDryRunAgainstHAProxy: --once --dry-run prints the plan the loop would
// act on, from what a real HAProxy runs, and changes nothing.
func TestDryRunAgainstHAProxy(t *testing.T) {
	h := newHarness(t)
	h.waitFor("the first spec", func() bool { return h.router.Ready() })
	before, reloads := h.configOnDisk(), h.reloads()
	r := &Router{Render: h.router.Render, Checker: h.router.Checker}
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"the same spec", h.spec(5, 95), "plan: none: HAProxy runs the spec"},
		{"weights", h.spec(30, 70), "plan: runtime: weights canary/canary 5->30, canary/production 95->70"},
		{"a new group", strings.Replace(h.spec(5, 95), "  FREE: canary\n", "  FREE: canary\n  BETA: canary\n", 1), "plan: reload: HAProxy runs trackrouter:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := r.prepare(&Update{Data: []byte(tc.spec), Source: weights.Source{File: "service.yaml"}})
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			cfg := Config{MasterSocket: h.cli.Socket, HAProxyConfig: h.router.ConfigPath}
			if err := dryRun(context.Background(), &out, tg, cfg); err != nil || !strings.Contains(out.String(), tc.want) || !strings.Contains(out.String(), "dry run: nothing written, HAProxy untouched") {
				t.Errorf("want %q, got %v\n%s", tc.want, err, out.String())
			}
		})
	}
	if h.configOnDisk() != before || h.reloads() != reloads || h.runtimeUpdates() != 0 {
		t.Errorf("a dry run changed something: reloads %v -> %v, runtime updates %v", reloads, h.reloads(), h.runtimeUpdates())
	}
}

// TestOnceSaysWhyAndDryRunTouchesNothing: --once names a spec it cannot
// read (not "found 0 documents"), and --once --dry-run creates no
// directory for the files it would write.
func TestOnceSaysWhyAndDryRunTouchesNothing(t *testing.T) {
	haproxytest.Binary(t)
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	err := Run(context.Background(), Config{Once: true, ServiceFile: filepath.Join(dir, "missing.yaml"), HAProxyConfig: filepath.Join(dir, "h.cfg")}, log)
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("--once on a missing spec: %v", err)
	}
	spec := filepath.Join(dir, "service.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf(fakeSpec, 5, 95)), 0o644)
	cfg := Config{Once: true, DryRun: true, ServiceFile: spec, HAProxyConfig: filepath.Join(dir, "a", "b", "haproxy.cfg"),
		MasterSocket: filepath.Join(dir, "run", "master.sock"), GroupsMap: filepath.Join(dir, "maps", "groups.map")}
	if err := Run(context.Background(), cfg, log); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "run", "maps"} {
		if _, err := os.Stat(filepath.Join(dir, d)); err == nil {
			t.Errorf("the dry run created %s", d)
		}
	}
}
