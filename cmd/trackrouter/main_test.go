package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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

	"github.com/trackrouter/trackrouter/internal/demo"
	"github.com/trackrouter/trackrouter/internal/haproxytest"
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
	canary, production := demo.Answer("canary", "v1.17.0"), demo.Answer("production", "v1.15.0")
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
