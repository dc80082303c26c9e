package testcluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

// The cluster of the running test binary, started by Main.
var (
	current  *Cluster
	startErr = errNotStarted
)

// Main starts one cluster for a test package, runs its tests and stops the
// cluster. Use it from TestMain:
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
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "trackrouter-testcluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcluster:", err)
		return 1
	}
	if bin, err := EnsureBinaries(ctx, os.Getenv("CI") != ""); err != nil {
		startErr = err
	} else {
		start := time.Now()
		current, err = Start(ctx, Options{BinDir: bin, Dir: dir})
		if err != nil {
			startErr = err
		} else {
			fmt.Fprintf(os.Stderr, "testcluster: control plane with 2 nodes ready in %.1fs (%s)\n", time.Since(start).Seconds(), dir)
		}
	}
	code := m.Run()
	if current != nil {
		current.Stop()
	}
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "testcluster: logs kept in %s/logs\n", dir)
	}
	return code
}

// Get returns the package's cluster. When it did not start, the test fails
// in CI and is skipped elsewhere, with the reason.
func Get(tb testing.TB) *Cluster {
	tb.Helper()
	if current != nil {
		return current
	}
	if os.Getenv("CI") != "" && !testing.Short() {
		tb.Fatalf("test cluster: %v", startErr)
	}
	tb.Skipf("test cluster: %v", startErr)
	return nil
}
