package router

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/router/haproxy"
	"github.com/trackrouter/trackrouter/router/source"
)

// TestTwoContainerShape runs the two-container deployment: an init step
// (--once) writes a validated config, HAProxy is started by someone else
// on it, and the sidecar drives that HAProxy through its master socket.
func TestTwoContainerShape(t *testing.T) {
	bin := haproxytest.Binary(t)
	dir := t.TempDir()
	backends := haproxytest.StartBackends(t, "internal", "canary", "paid", "production")
	spec := func(canary int, extra string) string {
		return fmt.Sprintf(specTemplate, backends["internal"].Addr, backends["canary"].Addr,
			backends["paid"].Addr, backends["production"].Addr, canary, 100-canary) + extra
	}
	specPath := filepath.Join(dir, "service.yaml")
	write := func(data string) {
		t.Helper()
		if err := os.WriteFile(specPath+".tmp", []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(specPath+".tmp", specPath); err != nil {
			t.Fatal(err)
		}
	}
	write(spec(10, ""))
	addr := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	logs := &haproxytest.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{
		ServiceFile:   specPath,
		HAProxyConfig: filepath.Join(dir, "haproxy.cfg"),
		Bind:          addr,
		HAProxyBin:    bin,
		Once:          true,
	}
	// The init container.
	if err := Run(context.Background(), cfg, log); err != nil {
		t.Fatalf("--once: %v", err)
	}
	// The HAProxy container.
	proc := haproxytest.Start(t, bin, cfg.HAProxyConfig)
	haproxytest.WaitListening(t, addr)

	// The sidecar container.
	r := &Router{ConfigPath: cfg.HAProxyConfig, HAProxy: &haproxy.MasterCLI{Socket: proc.MasterSock}, Metrics: NewMetrics(), Log: log,
		Render: renderOptions(cfg), MinInterval: 50 * time.Millisecond, Checker: haproxyconf.Checker{Binary: bin}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { r.Run(ctx); done <- struct{}{} }()
	go func() { (&source.FileSource{Path: specPath, Log: log}).Run(ctx, r.Submit); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("ready on the init container's config", r.Ready)
	if n := testutil.ToFloat64(r.Metrics.Reloads.WithLabelValues("success")); n != 0 {
		t.Errorf("the sidecar reloaded an HAProxy that already ran its config (%v reloads)", n)
	}
	client := haproxytest.Counter{URL: "http://" + addr + "/", Header: "X-Traffic-Group"}

	write(spec(40, ""))
	wait("runtime update", func() bool { return testutil.ToFloat64(r.Metrics.RuntimeUpdates) == 1 })
	if got, err := client.Send(100, "FREE"); err != nil || got["canary"] != 40 {
		t.Errorf("after a weight edit: want canary 40 of 100, got %v %v", got, err)
	}

	write(strings.Replace(spec(40, ""), "  FREE: canary\n", "  FREE: canary\n  BETA: internal\n", 1))
	wait("reload", func() bool { return testutil.ToFloat64(r.Metrics.Reloads.WithLabelValues("success")) == 1 })
	out, err := proc.Master("show proc")
	if err != nil || !strings.Contains(out, "1 [failed: 0]") {
		t.Errorf("show proc after one reload: %q %v", out, err)
	}
	if got, err := client.Send(20, "beta"); err != nil || got["internal"] != 20 {
		t.Errorf("after a structural edit: want all 20 BETA on internal, got %v %v", got, err)
	}
}

// TestOnceNeverOverwritesForeignFile: --once (and the sidecar) refuse a
// haproxy.cfg that trackrouter did not write, such as the machine's own,
// unless --overwrite says so.
func TestOnceNeverOverwritesForeignFile(t *testing.T) {
	bin := haproxytest.Binary(t)
	dir := t.TempDir()
	specPath := filepath.Join(dir, "service.yaml")
	if err := os.WriteFile(specPath, []byte(fmt.Sprintf(specTemplate, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", 5, 95)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	theirs := "global\n  maxconn 100\n"
	if err := os.WriteFile(cfgPath, []byte(theirs), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{ServiceFile: specPath, HAProxyConfig: cfgPath, HAProxyBin: bin, Once: true, Bind: "127.0.0.1:18999"}
	err := Run(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "was not written by trackrouter") || !strings.Contains(err.Error(), "--overwrite") {
		t.Errorf("want a refusal naming --overwrite, got %v", err)
	}
	if b, _ := os.ReadFile(cfgPath); string(b) != theirs {
		t.Errorf("the foreign file was changed:\n%s", b)
	}
	cfg.Overwrite = true
	if err := Run(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("with --overwrite: %v", err)
	}
	// Now the file is trackrouter's own: no flag needed any more.
	cfg.Overwrite = false
	if err := Run(context.Background(), cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("on its own file: %v", err)
	}
}
