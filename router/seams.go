package router

import (
	"context"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/router/haproxy"
)

// HAProxy is what the router needs from a running HAProxy. Only the router's
// loop calls it, one call at a time: HAProxy loses a reload sent while
// another is running. Every error is operational (retried); HAProxy's own
// verdict on a config comes from haproxy -c or from Observed.Proc.
type HAProxy interface {
	// Observe reads what HAProxy runs: the master's reload counters, the
	// current worker's stamp and server weights and, when mapPath is set,
	// the entries of that map.
	Observe(ctx context.Context, mapPath string) (haproxy.Observed, error)
	// Reload asks the master to load the config file again. It returns once
	// the request was sent; Observe tells whether the reload took effect.
	Reload(ctx context.Context) error
	// SetWeight sets a server's weight through the Runtime API and confirms
	// it with get weight.
	SetWeight(ctx context.Context, key haproxyconf.ServerKey, weight int) error
	// ReplaceMap replaces every entry of a map in one step (prepare map,
	// add map @VER, commit map @VER) and confirms it with show map.
	ReplaceMap(ctx context.Context, path string, entries map[string]string) error
	// SetReady ends a maintenance or drain forced on a server through the
	// Runtime API.
	SetReady(ctx context.Context, key haproxyconf.ServerKey) error
}

// Process is an HAProxy the sidecar runs itself (--run-haproxy). The router
// starts it once a valid config is on disk, notices at once when it exits,
// and restarts it when it stops answering.
type Process interface {
	// Start launches HAProxy on the config file. It returns once the process
	// runs, not once it serves: loading a config can take as long as name
	// resolution, and the router confirms it by the stamp.
	Start(ctx context.Context) error
	// Running reports whether the process started last is still running.
	Running() bool
	// Exited is closed when the process started last exits.
	Exited() <-chan struct{}
	// Kill stops HAProxy at once, workers included.
	Kill()
	// Alerts returns HAProxy's [ALERT] lines printed since t.
	Alerts(since time.Time) []string
	// Reexec asks the master to reload (SIGUSR2), which also creates its
	// master socket again.
	Reexec() error
}

var _ Process = (*haproxy.Supervisor)(nil)
var _ HAProxy = (*haproxy.MasterCLI)(nil)
