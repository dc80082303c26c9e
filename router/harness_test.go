package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/echo"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/router/haproxy"
	"github.com/trackrouter/trackrouter/router/source"
)

// specTemplate is the account-service example; %s are the track addresses
// (internal, canary, paid, production) and the canary backend's weights.
const specTemplate = `service: account-service
port: 8080
tracks:
  internal:   {version: v1.18.0, address: "%s"}
  canary:     {version: v1.17.0, address: "%s"}
  paid:       {version: v1.15.0, address: "%s"}
  production: {version: v1.15.0, address: "%s"}
groups:
  INTERNAL: internal
  FREE: canary
  ENTERPRISE: enterprise
default: paid
backends:
  internal:   {internal: 100}
  canary:     {canary: %d, production: %d}
  paid:       {paid: 5, production: 95}
  enterprise: {production: 100}
`

// harness is a sidecar in --run-haproxy mode watching a spec file, with a
// real HAProxy and one echo backend per track.
type harness struct {
	t        testing.TB
	dir      string
	specPath string
	router   *Router
	sup      *haproxy.Supervisor
	cli      *haproxy.MasterCLI
	backends map[string]*echo.Backend
	client   haproxytest.Counter
	addr     string
	cancel   context.CancelFunc
	done     chan struct{}
	logs     *haproxytest.SyncBuffer
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return startHarness(t, nil)
}

// newMapHarness is newHarness with header groups routed through a map file.
func newMapHarness(t testing.TB) *harness {
	t.Helper()
	return startHarness(t, nil, func(h *harness) { h.router.Render.GroupsMap = filepath.Join(h.dir, "groups.map") })
}

// startHarness starts the sidecar with the spec file holding initial(h), or
// the default spec when initial is nil, or no file when initial returns "".
// It waits for the first apply only with the default spec.
func startHarness(t testing.TB, initial func(h *harness) string, options ...func(h *harness)) *harness {
	t.Helper()
	bin := haproxytest.Binary(t)
	h := &harness{t: t, dir: t.TempDir(), logs: &haproxytest.SyncBuffer{}}
	h.specPath = filepath.Join(h.dir, "spec", "service.yaml")
	if err := os.MkdirAll(filepath.Dir(h.specPath), 0o755); err != nil {
		t.Fatal(err)
	}
	h.backends = haproxytest.StartBackends(t, "internal", "canary", "paid", "production")
	h.addr = fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	h.client = haproxytest.Counter{URL: "http://" + h.addr + "/", Header: "X-Traffic-Group"}
	if initial == nil {
		h.writeSpec(h.spec(5, 95))
	} else if spec := initial(h); spec != "" {
		h.writeSpec(spec)
	}

	log := slog.New(slog.NewTextHandler(io.MultiWriter(h.logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.cli = &haproxy.MasterCLI{Socket: filepath.Join(h.dir, "master.sock")}
	cfgPath := filepath.Join(h.dir, "haproxy.cfg")
	h.sup = &haproxy.Supervisor{Binary: bin, Config: cfgPath, Socket: h.cli.Socket, Log: log, Output: h.logs}
	h.router = &Router{
		ConfigPath:  cfgPath,
		Render:      haproxyconf.Options{Bind: h.addr},
		Checker:     haproxyconf.Checker{Binary: bin},
		HAProxy:     h.cli,
		Process:     h.sup,
		Metrics:     NewMetrics(),
		Log:         log,
		MinInterval: 50 * time.Millisecond,
	}
	for _, o := range options {
		o(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	src := &source.FileSource{Path: h.specPath, Log: log, Resync: time.Hour}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.router.Run(ctx) }()
	go func() { defer wg.Done(); src.Run(ctx, h.router.Submit) }()
	go func() { wg.Wait(); close(h.done) }()
	t.Cleanup(h.stop)
	if initial == nil {
		h.waitFor("first config applied", func() bool { return h.router.Ready() })
		haproxytest.WaitListening(t, h.addr)
	}
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
	h.sup.Stop(5 * time.Second)
	if h.t.Failed() {
		h.t.Logf("sidecar log:\n%s", h.logs.String())
	}
}

// spec returns the spec with the canary backend's weights set.
func (h *harness) spec(canary, production int) string {
	return fmt.Sprintf(specTemplate, h.backends["internal"].Addr, h.backends["canary"].Addr,
		h.backends["paid"].Addr, h.backends["production"].Addr, canary, production)
}

// writeSpec replaces the spec file by rename, as editors and kubectl-cp do.
func (h *harness) writeSpec(data string) {
	h.t.Helper()
	tmp := h.specPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.specPath); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s\nsidecar log:\n%s", what, h.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) reloads() float64 {
	return testutil.ToFloat64(h.router.Metrics.Reloads.WithLabelValues("success"))
}

func (h *harness) runtimeUpdates() float64 {
	return testutil.ToFloat64(h.router.Metrics.RuntimeUpdates)
}

func (h *harness) rejected() float64 { return testutil.ToFloat64(h.router.Metrics.Rejected) }

func (h *harness) configOnDisk() string {
	b, err := os.ReadFile(h.router.ConfigPath)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// send sends n requests of a group and fails the test on any error.
func (h *harness) send(n int, group string) map[string]int {
	h.t.Helper()
	got, err := h.client.Send(n, group)
	if err != nil {
		h.t.Fatalf("group %q: %v (answers so far %v)", group, err, got)
	}
	return got
}
