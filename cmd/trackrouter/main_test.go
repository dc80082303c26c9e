package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

// TestDemoAndSIGTERM runs the README's main command as a user would: the
// built binary in --demo mode. It must serve the example's routing, report
// ready, and on SIGTERM fail /readyz at once, keep serving for the shutdown
// delay, then stop HAProxy and exit 0.
func TestDemoAndSIGTERM(t *testing.T) {
	haproxytest.Binary(t)
	bin := filepath.Join(t.TempDir(), "trackrouter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	cmd := exec.Command(bin, "--demo", "--demo-dir", t.TempDir(), "--bind", addr, "--metrics-addr", metrics, "--shutdown-delay", "2s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pids := make(chan int, 1)
	var log strings.Builder
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		started := regexp.MustCompile(`haproxy started" pid=(\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if m := started.FindStringSubmatch(sc.Text()); m != nil {
				pid, _ := strconv.Atoi(m[1])
				pids <- pid
			}
		}
	}()

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := haproxytest.Counter{URL: "http://" + addr + "/", Header: "X-Traffic-Group"}.Send(100, "FREE")
	// The demo backends answer like the example app: track and version, a line.
	canary, production := demoAnswer("canary", "v1.17.0"), demoAnswer("production", "v1.15.0")
	if err != nil || got[canary] != 5 || got[production] != 95 {
		t.Errorf("demo routing: want %q 5 times and %q 95 times, got %v, %v", canary, production, got, err)
	}
	var haproxyPID int
	select {
	case haproxyPID = <-pids:
	case <-time.After(5 * time.Second):
		t.Fatalf("no \"haproxy started\" line in the log:\n%s", log.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if resp, err := http.Get("http://" + metrics + "/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("right after SIGTERM: want /readyz 503, got %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if got, err := (haproxytest.Counter{URL: "http://" + addr + "/", Header: "X-Traffic-Group"}).Send(20, "FREE"); err != nil || got[canary]+got[production] != 20 {
		t.Errorf("during the shutdown delay: want 20 requests served, got %v, %v", got, err)
	}
	exited := make(chan error, 1)
	go func() { <-logDone; exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, log.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("still running 40s after SIGTERM\n%s", log.String())
	}
	if err := syscall.Kill(haproxyPID, 0); err == nil {
		t.Errorf("haproxy (pid %d) still runs after the sidecar exited", haproxyPID)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	}
}

// TestUsageErrors: a wrong command line is said before anything runs, with
// where to look, and exit 2.
func TestUsageErrors(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "trackrouter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "give exactly one of --service-file and --configmap (or --demo to try it locally)"},
		{[]string{"version"}, `unexpected argument "version"`},
		{[]string{"--demo", "--service-file", "x"}, "--demo uses its own spec"},
		{[]string{"--service-file", "x", "--configmap", "a/b"}, "give exactly one of"},
		{[]string{"--configmap", "ns/spec", "--report-configmap", "spec", "--pod-name", "p"}, "names the spec's own ConfigMap"},
		{[]string{"--configmap", "ns/spec", "--report-configmap", "Bad_Name", "--pod-name", "p"}, "is not a ConfigMap name"},
		{[]string{"--configmap", "ns/spec", "--report-configmap", "s", "--pod-name", "P O D"}, "is not a pod name"},
		{[]string{"--service-file", "x", "--haproxy-metrics-addr", "foo"}, "--haproxy-metrics-addr: bind address \"foo\""},
		{[]string{"--service-file", "x", "--haproxy-metrics-addr", "127.0.0.1:09101"}, "share a port"},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "See 'trackrouter --help'.") {
			t.Errorf("%v: %v\n%s", tc.args, err, out)
		}
	}
	if out, err := exec.Command(bin, "--version").Output(); err != nil || !strings.HasPrefix(string(out), "trackrouter ") {
		t.Errorf("--version: %q %v", out, err)
	}
}

// buildTrackrouter builds the binary for a test.
func buildTrackrouter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "trackrouter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDemoPicksFreePorts: on a laptop where the demo's default ports are
// taken (8080 most often), --demo picks free ones, says which, and serves
// the example's routing there.
func TestDemoPicksFreePorts(t *testing.T) {
	haproxytest.Binary(t)
	bin := buildTrackrouter(t)
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:8404", "127.0.0.1:9101", "127.0.0.1:18082"} {
		// Held here, or taken by something else already: taken either way.
		if l, err := net.Listen("tcp", addr); err == nil {
			defer l.Close()
		}
	}
	cmd := exec.Command(bin, "--demo", "--demo-dir", t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	var out strings.Builder
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	addrs := map[string]string{}
	want := map[string]*regexp.Regexp{
		"haproxy": regexp.MustCompile(`^trackrouter demo: HAProxy on (\S+), `),
		"metrics": regexp.MustCompile(`^\s+curl -s http://(\S+)/metrics \| grep \^trackrouter_`),
	}
	timeout := time.After(15 * time.Second)
	for len(addrs) < len(want) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the demo stopped:\n%s\n%s", out.String(), stderr.String())
			}
			out.WriteString(l + "\n")
			for k, re := range want {
				if m := re.FindStringSubmatch(l); m != nil {
					addrs[k] = m[1]
				}
			}
		case <-timeout:
			t.Fatalf("no addresses printed:\n%s\n%s", out.String(), stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	for _, note := range []string{
		"trackrouter demo: port 18082 is taken: a demo backend answers on 127.0.0.1:",
		"trackrouter demo: 127.0.0.1:8080 is taken: HAProxy serves the demo on 127.0.0.1:",
		"trackrouter demo: 127.0.0.1:9101 is taken: the sidecar's metrics listen on 127.0.0.1:",
		"trackrouter demo: 127.0.0.1:8404 is taken: HAProxy's exporter listens on 127.0.0.1:",
	} {
		if !strings.Contains(out.String(), note) {
			t.Errorf("the demo does not say %q:\n%s", note, out.String())
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addrs["metrics"] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 15s:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := haproxytest.Counter{URL: "http://" + addrs["haproxy"] + "/", Header: "X-Traffic-Group"}.Send(100, "FREE")
	canary, production := demoAnswer("canary", "v1.17.0"), demoAnswer("production", "v1.15.0")
	if err != nil || got[canary] != 5 || got[production] != 95 {
		t.Errorf("demo routing on free ports: want %q 5 times and %q 95 times, got %v, %v", canary, production, got, err)
	}
}

// TestNoStopWithoutStart: when the sidecar fails before HAProxy ever ran
// (its metrics port taken, no spec yet), it does not log a soft stop.
func TestNoStopWithoutStart(t *testing.T) {
	haproxytest.Binary(t)
	bin := buildTrackrouter(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--service-file", filepath.Join(dir, "missing.yaml"), "--haproxy-config", filepath.Join(dir, "haproxy.cfg"),
		"--master-socket", filepath.Join(dir, "master.sock"), "--run-haproxy", "--metrics-addr", l.Addr().String(),
		"--haproxy-metrics-addr", "")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("metrics port taken: want exit 1 naming it, got %v\n%s", err, out)
	}
	if strings.Contains(string(out), "stopping haproxy") {
		t.Errorf("a stop of an HAProxy that never started is logged:\n%s", out)
	}
}
