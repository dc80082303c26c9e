package testcluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
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
		fmt.Fprintf(os.Stderr, "testcluster: logs kept in %s/logs\n", dir)
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
	if current, err = Start(ctx, Options{BinDir: bin, Dir: dir}); err != nil {
		current, startErr = nil, err
		return
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
