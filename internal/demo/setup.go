// Package demo sets up trackrouter's --demo mode: the local example spec
// and a demo backend for each of its tracks.
package demo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/trackrouter/trackrouter/examples"
	"github.com/trackrouter/trackrouter/internal/echo"
	"github.com/trackrouter/trackrouter/router"
	"github.com/trackrouter/trackrouter/weights"
)

// Answer is what a demo backend answers: its track and version, as the
// example app in examples/account-service does on a cluster.
func Answer(track, version string) string {
	return fmt.Sprintf("track=%s version=%s\n", track, version)
}

// Setup prepares the --demo mode in dir: it writes examples/local/service.yaml
// there (unless a service.yaml is already there, so edits survive a restart),
// starts a Backend on every track address it names, and points cfg at these
// files with HAProxy run by the sidecar. stop stops the backends.
func Setup(cfg *router.Config, dir string, out io.Writer) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	specPath := filepath.Join(dir, "service.yaml")
	if _, err := os.Stat(specPath); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(specPath, examples.LocalService, 0o644); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(specPath)
	if err != nil {
		return nil, err
	}
	spec, err := weights.ParseService(weights.Source{File: specPath}, data)
	if err != nil {
		return nil, fmt.Errorf("%w (delete %s to start from the example again)", err, specPath)
	}
	var backends []*echo.Backend
	stop = func() {
		for _, b := range backends {
			b.Stop()
		}
	}
	for _, track := range spec.TrackNames() {
		addr := spec.Tracks[track].Address
		if addr == "" {
			continue
		}
		// What a real build would say: which track and version answered.
		b, err := echo.StartBody(track, addr, Answer(track, spec.Tracks[track].Version))
		if err != nil {
			stop()
			return nil, fmt.Errorf("demo backend %s on %s: %w", track, addr, err)
		}
		backends = append(backends, b)
	}
	cfg.ServiceFile = specPath
	cfg.ConfigMap = ""
	cfg.HAProxyConfig = filepath.Join(dir, "haproxy.cfg")
	cfg.MasterSocket = filepath.Join(dir, "master.sock")
	if cfg.GroupsMap == "" {
		abs, err := filepath.Abs(filepath.Join(dir, "groups.map"))
		if err != nil {
			stop()
			return nil, err
		}
		cfg.GroupsMap = abs
	}
	cfg.RunHAProxy = true
	if cfg.Bind == "" {
		cfg.Bind = fmt.Sprintf("127.0.0.1:%d", spec.Port)
	}
	if strings.HasPrefix(cfg.HAProxyMetricsAddr, ":") {
		cfg.HAProxyMetricsAddr = "127.0.0.1" + cfg.HAProxyMetricsAddr
	}
	metrics := cfg.MetricsAddr
	if strings.HasPrefix(metrics, ":") {
		metrics = "127.0.0.1" + metrics
	}
	// Whoever stops the parent (go run, a terminal closed), the demo and its
	// HAProxy stop too.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
	fmt.Fprintf(out, `trackrouter demo: HAProxy on %[1]s, one demo backend per track, spec in %[2]s

  curl -s -H 'X-Traffic-Group: FREE' http://%[1]s/        # canary 5%%, production 95%%
  curl -s -H 'X-Traffic-Group: ENTERPRISE' http://%[1]s/  # production only
  for i in $(seq 100); do curl -s http://%[1]s/; done | sort | uniq -c
  # edit weights or groups in %[2]s: applied at runtime, no reload
  curl -s http://%[3]s/metrics | grep ^trackrouter_
  curl -s http://%[4]s/metrics | grep 'haproxy_server_http_responses_total{proxy="canary"'   # per track

`, cfg.Bind, specPath, metrics, cfg.HAProxyMetricsAddr)
	return stop, nil
}
