// Package e2e walks trackrouter as it ships on a real node: the image built
// from the Dockerfile, the install applied with kubectl -k, the example app
// on real pods, traffic through the HAProxy Service's ClusterIP by
// kube-proxy, and a whole release, counting every failed request.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/internal/testing/testnode"
)

// The images the walk runs: the product under the install's name and under
// a second one (the HAProxy tier's roll to a new router image), and the
// echo app at every version the walk deploys; badVersion fails 2% of
// requests, slowVersion answers each 30 ms late.
const (
	routerImage     = "ghcr.io/trackrouter/trackrouter:0.1.0"
	nextRouterImage = "ghcr.io/trackrouter/trackrouter:0.1.0-next"
	echoImage       = "trackrouter.local/echo"
	goodVersion     = "1.1.0"
	badVersion      = "1.2.0"
	slowVersion     = "1.3.0"
)

// env is what TestMain started for the walk.
var env struct {
	root, dir, images string
	cluster           *testcluster.Cluster
	node              *testnode.Node
	err               error
	timings           []string // cold build and start, for the report
	// keeper copies the pods' logs to keptLogs as they grow: the kubelet
	// deletes a pod's logs with the pod.
	keeper   *logKeeper
	keptLogs string
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		env.err = fmt.Errorf("-short: no real node started")
		os.Exit(m.Run())
	}
	code := 1
	func() {
		defer func() {
			if env.keeper != nil {
				env.keeper.Stop()
			}
			if env.node != nil {
				env.node.Stop()
			}
			if env.cluster != nil {
				env.cluster.Stop()
			}
		}()
		if env.err = setUp(); env.err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", env.err)
		}
		code = m.Run()
	}()
	if env.dir != "" {
		if code == 0 {
			os.RemoveAll(env.dir)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: logs kept in %s (cluster logs/, node/logs/, every pod's in kept-pod-logs/)\n", env.dir)
		}
	}
	os.Exit(code)
}

// setUp builds what is missing (the binaries under CI, the images always:
// they are this checkout's), then starts the control plane and the node.
func setUp() error {
	ctx := context.Background()
	var err error
	if env.root, err = filepath.Abs("../.."); err != nil {
		return err
	}
	if env.dir, err = os.MkdirTemp("", "trackrouter-e2e-"); err != nil {
		return err
	}
	build := os.Getenv("CI") != ""
	start := time.Now()
	bin, err := testcluster.EnsureBinaries(ctx, build)
	if err != nil {
		return err
	}
	nbin, err := testcluster.NodeBinaries(ctx, build)
	if err != nil {
		return err
	}
	env.timings = append(env.timings, fmt.Sprintf("binaries ready in %s", time.Since(start).Round(time.Second)))
	if err := testnode.Preflight(); err != nil {
		return err
	}
	start = time.Now()
	env.images = filepath.Join(env.dir, "images")
	cmd := exec.CommandContext(ctx, filepath.Join(env.root, "hack", "image", "build.sh"), env.images)
	cmd.Env = append(os.Environ(), "IMAGE="+routerImage, "IMAGE_ALSO="+nextRouterImage,
		"ECHO_TAGS=1.0.0 1.0 0.2.3 "+goodVersion, "ECHO_BAD_TAGS="+badVersion, "ECHO_SLOW_TAGS="+slowVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/image/build.sh: %v\n%s", err, out)
	} else {
		var steps []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "built ") || strings.HasPrefix(line, "base ") {
				steps = append(steps, line)
			}
		}
		env.timings = append(env.timings, fmt.Sprintf("images built in %s: %s", time.Since(start).Round(time.Second), strings.Join(steps, "; ")))
	}
	start = time.Now()
	nodeDir := filepath.Join(env.dir, "node")
	if err := os.MkdirAll(nodeDir, 0o700); err != nil {
		return err
	}
	if env.node, err = testnode.New(testnode.Options{Dir: nodeDir, BinDir: nbin}); err != nil {
		return err
	}
	if env.cluster, err = testcluster.Start(ctx, testcluster.Options{BinDir: bin, Dir: env.dir, Nodes: -1, BindAddress: testnode.Address}); err != nil {
		return err
	}
	archives := []string{"pause.tar", "trackrouter.tar", "echo.tar"}
	for i, a := range archives {
		archives[i] = filepath.Join(env.images, a)
	}
	if err := env.node.Start(ctx, env.cluster, archives...); err != nil {
		return fmt.Errorf("%w (node logs in %s)", err, filepath.Join(nodeDir, "logs"))
	}
	env.timings = append(env.timings, fmt.Sprintf("control plane and node Ready in %s", time.Since(start).Round(100*time.Millisecond)))
	env.keptLogs = filepath.Join(env.dir, "kept-pod-logs")
	env.keeper = keepLogs(env.node.PodLogs(), env.keptLogs)
	return nil
}

// need returns the cluster and node. When they did not start, the test
// fails with the reason in CI (a walk that cannot run is a failure there),
// and is skipped with it elsewhere (-short, a machine without root).
func need(t *testing.T) (*testcluster.Cluster, *testnode.Node) {
	t.Helper()
	if env.err != nil {
		if os.Getenv("CI") != "" && !testing.Short() {
			t.Fatalf("the real node did not start: %v", env.err)
		}
		t.Skipf("the real node did not start: %v", env.err)
	}
	return env.cluster, env.node
}
