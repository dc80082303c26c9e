// Command cluster runs the test control plane for people: `make cluster-up`
// starts it in the background, `make cluster-down` stops it. It stays in the
// foreground until SIGINT or SIGTERM, then stops every component.
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
)

func main() {
	dir := pflag.String("dir", filepath.Join(os.TempDir(), "trackrouter-cluster"), "state, certificates, logs and the kubeconfig")
	nodes := pflag.Int("nodes", 2, "fake nodes")
	pflag.Parse()
	if err := run(*dir, *nodes); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(dir string, nodes int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := filepath.Join(dir, "ready")
	os.Remove(ready)
	if err := os.RemoveAll(filepath.Join(dir, "etcd")); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	bin, err := testcluster.EnsureBinaries(ctx, false)
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := testcluster.Start(ctx, testcluster.Options{BinDir: bin, Dir: dir, Nodes: nodes})
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Printf("cluster ready in %.1fs with %d fake nodes; logs in %s/logs\n", time.Since(start).Seconds(), nodes, dir)
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	if err := os.WriteFile(ready, []byte(c.Kubeconfig+"\n"), 0o600); err != nil {
		return err
	}
	<-ctx.Done()
	os.Remove(ready)
	return nil
}
