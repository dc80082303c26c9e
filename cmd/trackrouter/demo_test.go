package main

import (
	"net"
	"strings"
	"testing"

	"github.com/trackrouter/trackrouter/router"
)

// TestFreeListeners: the demo's listeners never share a port, a default
// one that is taken moves, and one given by flag that is taken is an error
// (HAProxy would share it with another HAProxy, or retry for ever).
func TestFreeListeners(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().String()
	none := func(string) bool { return false }

	// The spec's port is the sidecar's metrics port: one of them moves.
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := free.Addr().String()
	free.Close()
	cfg := router.Config{Bind: addr, MetricsAddr: addr, HAProxyMetricsAddr: ""}
	notes, err := freeListeners(&cfg, none)
	if err != nil || cfg.Bind != addr || cfg.MetricsAddr == addr || len(notes) != 1 {
		t.Errorf("a shared default port: bind %s, metrics %s, notes %q, %v", cfg.Bind, cfg.MetricsAddr, notes, err)
	}

	// A default that is taken moves; ":port" is made local.
	cfg = router.Config{Bind: taken, MetricsAddr: "", HAProxyMetricsAddr: ":" + strings.Split(taken, ":")[1]}
	if _, err := freeListeners(&cfg, none); err != nil || cfg.Bind == taken || !strings.HasPrefix(cfg.HAProxyMetricsAddr, "127.0.0.1:") || cfg.HAProxyMetricsAddr == taken {
		t.Errorf("taken defaults: %+v, %v", cfg, err)
	}

	// A flag on a taken port is an error naming it.
	cfg = router.Config{Bind: taken}
	if _, err := freeListeners(&cfg, func(f string) bool { return f == "bind" }); err == nil || !strings.Contains(err.Error(), "--bind "+taken+": the port is taken") {
		t.Errorf("--bind on a taken port: %v", err)
	}
}
