package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/trackrouter/trackrouter/examples"
	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/echo"
	"github.com/trackrouter/trackrouter/router"
	"github.com/trackrouter/trackrouter/weights"
)

// demoAnswer is what a demo backend answers: its track and version, as the
// example app in examples/account-service does on a cluster.
func demoAnswer(track, version string) string {
	return fmt.Sprintf("track=%s version=%s\n", track, version)
}

// setupDemo prepares the --demo mode in dir: it writes
// examples/local/service.yaml there (unless a service.yaml is already there,
// so edits survive a restart), starts a demo backend on every track address
// it names, and points cfg at these files with HAProxy run by the sidecar.
// A default port that is taken (8080 on many laptops) is replaced by a free
// one, and said; a port the user gave (changed reports which flags) is
// used as given. stop stops the backends.
func setupDemo(cfg *router.Config, dir string, changed func(flag string) bool, out io.Writer) (stop func(), err error) {
	// Before anything starts: the most likely thing missing on a laptop.
	bin, err := haproxyconf.FindBinary(cfg.HAProxyBin)
	if err != nil {
		return nil, err
	}
	cfg.HAProxyBin = bin
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := haproxyconf.CheckMapPath(filepath.Join(dir, "groups.map")); err != nil {
		return nil, fmt.Errorf("--demo-dir %q: HAProxy's groups map goes there, and haproxy.cfg names it: use a path of letters, digits, '_', '.', '-' and '/'", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	specPath := filepath.Join(dir, "service.yaml")
	_, statErr := os.Stat(specPath)
	kept := statErr == nil
	notes, err := writeDemoSpec(specPath)
	if err != nil {
		return nil, err
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
		b, err := echo.StartBody(track, addr, demoAnswer(track, spec.Tracks[track].Version))
		if err != nil {
			stop()
			return nil, fmt.Errorf("demo backend %s on %s: %w (free the port, edit the address in %s, or delete %s so that the demo picks free ports)", track, addr, err, specPath, dir)
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
	moved, err := freeListeners(cfg, changed)
	if err != nil {
		stop()
		return nil, err
	}
	notes = append(notes, moved...)
	// Whoever stops the parent (go run, a terminal closed), the demo and its
	// HAProxy stop too.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
	for _, n := range notes {
		fmt.Fprintf(out, "trackrouter demo: %s\n", n)
	}
	if kept {
		fmt.Fprintf(out, "trackrouter demo: the spec in %s is kept from an earlier run, with your edits (delete it to start from the example again)\n", specPath)
	}
	fmt.Fprintf(out, `trackrouter demo: HAProxy on %[1]s, one demo backend per track, spec in %[2]s

`, cfg.Bind, specPath)
	for _, value := range []string{"FREE", "ENTERPRISE"} {
		if b, ok := spec.Groups[value]; ok {
			fmt.Fprintf(out, "  curl -s -H 'X-Traffic-Group: %s' http://%s/   # %s\n", value, cfg.Bind, shares(spec, b))
		}
	}
	fmt.Fprintf(out, `  for i in $(seq 100); do curl -s http://%[1]s/; done | sort | uniq -c   # no group: %[3]s
  # edit weights or groups in %[2]s: applied at runtime, no reload
`, cfg.Bind, specPath, shares(spec, spec.Default))
	if cfg.MetricsAddr != "" {
		fmt.Fprintf(out, "  curl -s http://%s/metrics | grep ^trackrouter_\n", cfg.MetricsAddr)
	}
	if cfg.HAProxyMetricsAddr != "" {
		fmt.Fprintf(out, "  curl -s http://%s/metrics | grep 'haproxy_server_http_responses_total{proxy=\"canary\"'   # per track\n", cfg.HAProxyMetricsAddr)
	}
	fmt.Fprintln(out)
	return stop, nil
}

// writeDemoSpec writes the example spec to path unless a spec is there
// already (edits survive a restart); a demo backend's default port that is
// taken is replaced by a free one, and said.
func writeDemoSpec(path string) (notes []string, err error) {
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	spec := string(examples.LocalService)
	for port := 18081; port <= 18084; port++ {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if free, ok := freeAddr(addr); !ok {
			spec = strings.ReplaceAll(spec, `"`+addr+`"`, `"`+free+`"`)
			notes = append(notes, fmt.Sprintf("port %d is taken: a demo backend answers on %s", port, free))
		}
	}
	return notes, os.WriteFile(path, []byte(spec), 0o644)
}

// freeListeners moves each of the demo's listeners whose default port is
// taken (or taken by another of them) to a free port, and says so. One the
// user gave with a flag stays, and a taken one is an error: HAProxy would
// share it with another HAProxy (SO_REUSEPORT) or retry for ever.
func freeListeners(cfg *router.Config, changed func(flag string) bool) (notes []string, err error) {
	used := make(map[string]bool)
	for _, p := range []struct {
		flag, what string
		addr       *string
	}{
		{"bind", "HAProxy serves the demo on", &cfg.Bind},
		{"haproxy-metrics-addr", "HAProxy's exporter listens on", &cfg.HAProxyMetricsAddr},
		{"metrics-addr", "the sidecar's metrics listen on", &cfg.MetricsAddr},
	} {
		if *p.addr == "" {
			continue
		}
		if strings.HasPrefix(*p.addr, ":") {
			*p.addr = "127.0.0.1" + *p.addr // the demo is local
		}
		_, free := freeAddr(*p.addr)
		switch {
		case changed(p.flag) && (!free || used[*p.addr]):
			return nil, fmt.Errorf("--%s %s: the port is taken (by another program, or by another of the demo's listeners): free it or choose another", p.flag, *p.addr)
		case !changed(p.flag) && (!free || used[*p.addr]):
			was := *p.addr
			*p.addr = pickFree(was, used)
			notes = append(notes, fmt.Sprintf("%s is taken: %s %s (--%s to choose)", was, p.what, *p.addr, p.flag))
		}
		used[*p.addr] = true
	}
	return notes, nil
}

// pickFree is a free port on addr's host that none of used holds.
func pickFree(addr string, used map[string]bool) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return addr
		}
		a := l.Addr().String()
		l.Close()
		if !used[a] {
			return a
		}
	}
	return addr
}

// freeAddr returns addr and true when it can be listened on now, else a
// free port on the same host and false.
func freeAddr(addr string) (string, bool) {
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		return addr, true
	}
	free := pickFree(addr, nil)
	return free, free == addr // addr back: not ours to fix, the listener says what is wrong
}

// shares is a backend's weights in words, from the spec in use:
// "canary 5%, production 95%".
func shares(spec *weights.Spec, backend string) string {
	b := spec.Backends[backend]
	total := 0
	for _, w := range b {
		total += w
	}
	var parts []string
	for _, track := range spec.Stages {
		w, ok := b[track]
		if !ok {
			continue
		}
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(w) / float64(total)
		}
		parts = append(parts, fmt.Sprintf("%s %s%%", track, strconv.FormatFloat(pct, 'f', -1, 64)))
	}
	if len(parts) == 1 {
		return parts[0][:strings.IndexByte(parts[0], ' ')] + " only"
	}
	return strings.Join(parts, ", ")
}
