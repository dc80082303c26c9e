// Command cluster runs the test control plane for people: `make cluster-up`
// starts it in the background, `make cluster-down` stops it. With --node it
// also runs a real node (containerd, kubelet, kube-proxy, CoreDNS: `make
// node-up`), whose pods are real containers, instead of kwok's fake nodes.
// It stays in the foreground until SIGINT or SIGTERM, then stops every
// component and undoes what the node changed on the host.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/internal/testing/testnode"
)

func main() {
	dir := pflag.String("dir", filepath.Join(os.TempDir(), "trackrouter-cluster"), "state, certificates, logs and the kubeconfig")
	nodes := pflag.Int("nodes", 2, "fake nodes (kwok); with --node, none unless given")
	node := pflag.Bool("node", false, "run a real node too (needs root, containerd, runc, iptables: see make node-up)")
	images := pflag.StringSlice("images", nil, "OCI image archives to import into the real node (make image writes them to dist/images)")
	clean := pflag.Bool("clean", false, "only undo what a node under --dir left on the host (after a crash), then exit")
	pflag.Parse()
	if !pflag.CommandLine.Changed("nodes") && *node {
		*nodes = -1
	}
	var err error
	if *clean {
		testnode.Clean(filepath.Join(*dir, "node"), "")
		os.Remove(filepath.Join(*dir, "ready"))
		fmt.Printf("cleaned up what a node under %s left on this machine (its state and logs stay there)\n", *dir)
	} else {
		err = run(*dir, *nodes, *node, *images)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(dir string, nodes int, realNode bool, images []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := filepath.Join(dir, "ready")
	// Nothing of a running cluster is touched: its state dir, its node.
	if _, err := os.Stat(ready); err == nil {
		return fmt.Errorf("a cluster runs with --dir %s (its ready file is there): stop it first (make node-down or make cluster-down); after a crash, --clean", dir)
	}
	if realNode {
		if err := testnode.Busy(); err != nil {
			return err
		}
		for _, a := range images {
			if _, err := os.Stat(a); err != nil {
				return fmt.Errorf("--images %s: %w (make image writes dist/images/pause.tar, trackrouter.tar and echo.tar)", a, err)
			}
		}
	}
	for _, d := range []string{"etcd", "node"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	bin, err := testcluster.EnsureBinaries(ctx, false)
	if err != nil {
		return err
	}
	start := time.Now()
	opt := testcluster.Options{BinDir: bin, Dir: dir, Nodes: nodes}
	var n *testnode.Node
	if realNode {
		nbin, err := testcluster.NodeBinaries(ctx, false)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "node"), 0o700); err != nil {
			return err
		}
		if n, err = testnode.New(testnode.Options{Dir: filepath.Join(dir, "node"), BinDir: nbin}); err != nil {
			return err
		}
		defer n.Stop()
		opt.BindAddress = testnode.Address
	}
	c, err := testcluster.Start(ctx, opt)
	if err != nil {
		return err
	}
	defer c.Stop()
	what := fmt.Sprintf("%d fake nodes", max(nodes, 0))
	if n != nil {
		if err := n.Start(ctx, c, images...); err != nil {
			return fmt.Errorf("%w (logs in %s)", err, filepath.Join(n.Dir, "logs"))
		}
		what = fmt.Sprintf("the real node %s (pods on %s, logs in %s)", n.Name, testnode.PodCIDR, filepath.Join(n.Dir, "logs"))
	}
	fmt.Printf("cluster ready in %.1fs with %s; logs in %s/logs\n", time.Since(start).Seconds(), what, dir)
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	fmt.Printf("export PATH=%s:$PATH   # kubectl of the server's version\n", bin)
	if n == nil {
		fmt.Println("go run ./cmd/track-controller --router-image ghcr.io/trackrouter/trackrouter:0.1.0   # the controller against this cluster, from here")
		fmt.Println("# kwok's pods are not real: no sidecar runs in them, so every service shows FAILING (\"has not reported what it runs\"); make node-up runs real pods")
	}
	if err := os.WriteFile(ready, []byte(c.Kubeconfig+"\n"), 0o600); err != nil {
		return err
	}
	<-ctx.Done()
	os.Remove(ready)
	return nil
}
