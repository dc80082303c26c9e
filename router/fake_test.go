package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/router/haproxy"
	"github.com/trackrouter/trackrouter/weights"
)

// fakeHAProxy is an HAProxy in memory, behind the HAProxy and Process
// interfaces: a reload or start loads the config file from fakeFiles, and
// faults are injected per call. It is for the failure paths that a real
// HAProxy cannot be made to show on demand.
type fakeHAProxy struct {
	mu      sync.Mutex
	files   *fakeFiles
	cfgPath string
	mapPath string

	running bool
	done    chan struct{}
	proc    haproxy.Proc
	stamp   string
	weights map[haproxyconf.ServerKey]int
	groups  map[string]string
	forced  map[haproxyconf.ServerKey]bool
	down    map[haproxyconf.ServerKey]string // servers taking no traffic, and why

	// Faults.
	observeErr  error // every Observe fails with it while set
	slowLoad    int   // a reload takes this many Observes to land; they fail meanwhile
	loading     int   // Observes left before the reload in progress lands
	loadTarget  []byte
	failReloads int   // the next reloads fail (the master counts them as failed)
	failStarts  int   // the next starts exit at once
	runtimeErr  error // every SetWeight and ReplaceMap fails with it while set
	starts      int
	reexecs     int
	reloads     int
	setWeights  int
	mapReplaces int
	observes    int
}

func newFake(files *fakeFiles, cfgPath, mapPath string) *fakeHAProxy {
	return &fakeHAProxy{files: files, cfgPath: cfgPath, mapPath: mapPath}
}

func (f *fakeHAProxy) Observe(ctx context.Context, mapPath string) (haproxy.Observed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.observeErr != nil {
		return haproxy.Observed{}, f.observeErr
	}
	if !f.running {
		return haproxy.Observed{}, fmt.Errorf("%w: %w", haproxy.ErrUnavailable, syscall.ECONNREFUSED)
	}
	if f.loading > 0 {
		f.loading--
		if f.loading == 0 {
			f.load(f.loadTarget)
			f.proc.Reloads++
		}
		return haproxy.Observed{}, fmt.Errorf("%w: the master re-executes: %w", haproxy.ErrUnavailable, syscall.ECONNREFUSED)
	}
	f.observes++
	o := haproxy.Observed{Proc: f.proc, Stamp: f.stamp, Weights: maps.Clone(f.weights), Forced: maps.Clone(f.forced), Down: maps.Clone(f.down)}
	o.Proc.Workers = []int{f.proc.MasterPID + f.proc.Reloads + 1}
	if mapPath != "" {
		o.Groups = maps.Clone(f.groups)
		if o.Groups == nil {
			o.Groups = map[string]string{}
		}
	}
	return o, nil
}

func (f *fakeHAProxy) Reload(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.observeErr != nil {
		return f.observeErr
	}
	f.reloads++
	if f.failReloads > 0 {
		f.failReloads--
		f.proc.Reloads++
		f.proc.FailedReloads++
		return nil
	}
	cfg, _ := f.files.ReadFile(f.cfgPath)
	if f.slowLoad > 0 {
		f.loading, f.loadTarget = f.slowLoad, cfg
		return nil
	}
	f.load(cfg)
	f.proc.Reloads++
	return nil
}

// load parses what HAProxy would: the stamp and the server weights of the
// config, and the map file.
func (f *fakeHAProxy) load(cfg []byte) {
	f.stamp, f.weights = "", make(map[haproxyconf.ServerKey]int)
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 0:
		case fields[0] == "backend":
			section = fields[1]
		case fields[0] == "description":
			f.stamp = fields[1]
		case fields[0] == "server" && section != "":
			for i := range fields {
				if fields[i] == "weight" {
					f.weights[haproxyconf.ServerKey{Backend: section, Server: fields[1]}], _ = strconv.Atoi(fields[i+1])
				}
			}
		case !strings.HasPrefix(sc.Text(), " "):
			section = ""
		}
	}
	if f.mapPath != "" {
		m, _ := f.files.ReadFile(f.mapPath)
		f.groups = haproxyconf.ParseGroupsMap(m)
	}
}

func (f *fakeHAProxy) SetWeight(ctx context.Context, key haproxyconf.ServerKey, weight int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.runtimeErr != nil {
		return f.runtimeErr
	}
	if _, ok := f.weights[key]; !ok {
		return fmt.Errorf("set server %s weight %d: No such server.", key, weight)
	}
	f.weights[key] = weight
	f.setWeights++
	return nil
}

func (f *fakeHAProxy) ReplaceMap(ctx context.Context, path string, entries map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.runtimeErr != nil {
		return f.runtimeErr
	}
	f.groups = maps.Clone(entries)
	f.mapReplaces++
	return nil
}

func (f *fakeHAProxy) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	f.done = make(chan struct{})
	if f.failStarts > 0 {
		f.failStarts--
		close(f.done)
		return nil
	}
	f.running, f.loading = true, 0
	f.proc = haproxy.Proc{MasterPID: 100 * f.starts}
	cfg, _ := f.files.ReadFile(f.cfgPath)
	f.load(cfg)
	return nil
}

func (f *fakeHAProxy) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

func (f *fakeHAProxy) Exited() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

func (f *fakeHAProxy) Kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		f.running = false
		close(f.done)
	}
}

func (f *fakeHAProxy) Reexec() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reexecs++
	f.observeErr = nil // the master creates its socket again
	return nil
}

func (f *fakeHAProxy) SetReady(ctx context.Context, key haproxyconf.ServerKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.forced, key)
	return nil
}

func (f *fakeHAProxy) Alerts(since time.Time) []string {
	return []string{"[ALERT] (1) : Starting frontend web: cannot bind socket (Address already in use) [127.0.0.1:8080]"}
}

// state returns the stamp and weights the fake runs.
func (f *fakeHAProxy) state() (string, map[haproxyconf.ServerKey]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stamp, maps.Clone(f.weights)
}

// count reads a counter of the fake under its lock.
func (f *fakeHAProxy) count(fn func(f *fakeHAProxy) int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn(f)
}

func (f *fakeHAProxy) set(fn func(f *fakeHAProxy)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// fakeFiles is a file system in memory whose writes can fail (a full disk).
type fakeFiles struct {
	mu       sync.Mutex
	data     map[string][]byte
	writeErr error
	writes   int
}

func (f *fakeFiles) ReadFile(path string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.data[path]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", path, syscall.ENOENT)
	}
	return b, nil
}

func (f *fakeFiles) WriteFile(path string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writeErr != nil {
		return fmt.Errorf("write %s: %w", path, f.writeErr)
	}
	f.data[path] = bytes.Clone(data)
	f.writes++
	return nil
}

func (f *fakeFiles) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writeErr = err
}

// fakeChecker answers haproxy -c with queued verdicts, then accepts. While
// hang is set, a check blocks until hang closes or its context ends.
type fakeChecker struct {
	mu      sync.Mutex
	answers []error
	calls   int
	hang    chan struct{}
}

func (c *fakeChecker) Check(ctx context.Context, cfg []byte) error {
	c.mu.Lock()
	hang := c.hang
	c.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if len(c.answers) == 0 {
		return nil
	}
	err := c.answers[0]
	c.answers = c.answers[1:]
	return err
}

func (c *fakeChecker) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// recordingRejecter records rejections, as the Event recorder would see them.
type recordingRejecter struct {
	mu   sync.Mutex
	errs []string
}

func (r *recordingRejecter) Rejected(_ weights.Source, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err.Error())
}

func (r *recordingRejecter) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// fakeRig is a Router on the fakes, fed specs directly.
type fakeRig struct {
	t        *testing.T
	r        *Router
	hap      *fakeHAProxy
	files    *fakeFiles
	checker  *fakeChecker
	rejecter *recordingRejecter
	logs     *haproxytest.SyncBuffer
	cancel   context.CancelFunc
	done     chan struct{}
}

const fakeSpec = `service: web
port: 8080
tracks:
  canary:     {version: v2, address: "127.0.0.1:9001"}
  production: {version: v1, address: "127.0.0.1:9002"}
groups:
  FREE: free
default: all
backends:
  free: {canary: %d, production: %d}
  all:  {production: 1}
`

func startFake(t *testing.T, supervised bool, opts ...func(*fakeRig)) *fakeRig {
	t.Helper()
	files := &fakeFiles{data: map[string][]byte{}}
	g := &fakeRig{t: t, files: files, checker: &fakeChecker{}, rejecter: &recordingRejecter{},
		logs: &haproxytest.SyncBuffer{}, hap: newFake(files, "/cfg/haproxy.cfg", ""), done: make(chan struct{})}
	g.r = &Router{
		ConfigPath:   "/cfg/haproxy.cfg",
		Checker:      g.checker,
		HAProxy:      g.hap,
		Files:        files,
		Metrics:      NewMetrics(),
		Log:          slog.New(slog.NewTextHandler(io.MultiWriter(g.logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Rejecter:     g.rejecter,
		PollInterval: 10 * time.Millisecond,
		Backoff:      10 * time.Millisecond,
	}
	if supervised {
		g.r.Process = g.hap
	} else {
		g.hap.running = true // run by someone else, with no config of ours yet
	}
	for _, o := range opts {
		o(g)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.r.Run(ctx); close(g.done) }()
	t.Cleanup(func() {
		cancel()
		<-g.done
		if t.Failed() {
			t.Logf("router log:\n%s", g.logs.String())
		}
	})
	return g
}

func (g *fakeRig) submit(canary int) {
	g.r.Submit(Update{Data: []byte(fmt.Sprintf(fakeSpec, canary, 100-canary)), Source: weights.Source{File: "service.yaml"}})
}

func (g *fakeRig) submitRaw(data string) {
	g.r.Submit(Update{Data: []byte(data), Source: weights.Source{File: "service.yaml"}})
}

func (g *fakeRig) waitFor(what string, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			g.t.Fatalf("timed out waiting for %s\nrouter log:\n%s", what, g.logs.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// canary is the canary weight that HAProxy (the fake) runs.
func (g *fakeRig) canary() int {
	_, w := g.hap.state()
	return w[haproxyconf.ServerKey{Backend: "free", Server: "canary"}]
}

var errDiskFull = errors.New("no space left on device")
