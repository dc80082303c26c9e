package testcluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The cluster of the running test binary, started by the first Get under
// Main.
var (
	current   *Cluster
	startErr  = errNotStarted
	dir       string
	underMain bool
	once      sync.Once
)

// Main runs a test package's tests with one cluster, started by the first
// test that calls Get (tests and benchmarks that do not need it run on a
// quiet machine), and stops it at the end. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testcluster.Main(m)) }
//
// With CI set, missing binaries are built first; elsewhere tests that call
// Get are skipped with a message saying to run `make kube-bins`.
//
// With -short no cluster starts: tests that call Get are skipped, so the
// fast tests run on a machine without the binaries.
func Main(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		startErr = errors.New("-short: no control plane started")
		return m.Run()
	}
	underMain = true
	code := m.Run()
	if current != nil {
		current.Stop()
	}
	if dir == "" {
		return code
	}
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "testcluster: logs kept in %s/try-*/logs\n", dir)
	}
	return code
}

// startOnce starts the package's cluster.
func startOnce() {
	ctx := context.Background()
	var err error
	if dir, err = os.MkdirTemp("", "trackrouter-testcluster-"); err != nil {
		startErr = err
		return
	}
	bin, err := EnsureBinaries(ctx, os.Getenv("CI") != "")
	if err != nil {
		startErr = err
		return
	}
	start := time.Now()
	// A second try on fresh ports: each component's port is picked free
	// and then bound by another process, and a test binary of another
	// package on the same machine can take it between the two (seen: kwok's
	// "bind: address already in use" with two packages' clusters starting
	// at once).
	for try := 1; ; try++ {
		tryDir := filepath.Join(dir, fmt.Sprintf("try-%d", try))
		if current, err = Start(ctx, Options{BinDir: bin, Dir: tryDir}); err == nil {
			break
		}
		if try == 2 {
			current, startErr = nil, err
			return
		}
		fmt.Fprintf(os.Stderr, "testcluster: the control plane did not start (%v); once more on other ports\n", err)
	}
	fmt.Fprintf(os.Stderr, "testcluster: control plane with 2 nodes ready in %.1fs (%s)\n", time.Since(start).Seconds(), dir)
}

// Get returns the package's cluster. When it did not start, the test fails
// in CI and is skipped elsewhere, with the reason.
func Get(tb testing.TB) *Cluster {
	tb.Helper()
	if underMain {
		once.Do(startOnce)
	}
	if current != nil {
		return current
	}
	if os.Getenv("CI") != "" && !testing.Short() {
		tb.Fatalf("test cluster: %v", startErr)
	}
	tb.Skipf("test cluster: %v", startErr)
	return nil
}
