// Command track-controller turns trackrouter service specs into track
// Deployments, track Services and the HAProxy tier. Run with --help.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/trackrouter/trackrouter/controller"
	"github.com/trackrouter/trackrouter/internal/kube"
	"github.com/trackrouter/trackrouter/internal/version"
)

func main() {
	var cfg controller.Config
	fs := pflag.NewFlagSet("track-controller", pflag.ExitOnError)
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else the in-cluster config)")
	fs.StringVar(&cfg.Context, "context", "", "kubeconfig context to use (default: the current one)")
	fs.StringVarP(&cfg.Namespace, "namespace", "n", "", "watch only this namespace (default: all)")
	fs.StringVar(&cfg.RouterImage, "router-image", "", "image of the HAProxy tier, with haproxy and trackrouter (default: the controller's own image, read from its Pod named by $POD_NAMESPACE and $POD_NAME)")
	fs.IntVar(&cfg.Workers, "workers", 2, "specs synced in parallel")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":9102", "serve /metrics, /healthz and /readyz here; empty disables")
	fs.BoolVar(&cfg.LeaderElect, "leader-elect", true, "run several replicas; only the holder of the Lease writes")
	fs.StringVar(&cfg.LeaseNamespace, "lease-namespace", "trackrouter-system", "namespace of the leader Lease")
	fs.StringVar(&cfg.LeaseName, "lease-name", "track-controller", "name of the leader Lease")
	fs.Float32Var(&cfg.QPS, "kube-api-qps", kube.DefaultQPS, "API requests per second this client may send (client-side limit)")
	fs.IntVar(&cfg.Burst, "kube-api-burst", kube.DefaultBurst, "API requests this client may send in a burst")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "track-controller turns each service spec (a ConfigMap labelled trackrouter.dev/service, key\n"+
			"service.yaml) into its track Deployments, track Services and HAProxy tier, keeps them\n"+
			"as declared and removes what the spec no longer asks for.\n\nFlags:\n%s", fs.FlagUsages())
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version.String("track-controller"))
		return
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "track-controller: unexpected argument %q: track-controller takes flags only\nSee 'track-controller --help'.\n", fs.Arg(0))
		os.Exit(2)
	}
	if cfg.RouterImage == "" && (os.Getenv("POD_NAMESPACE") == "" || os.Getenv("POD_NAME") == "") {
		fmt.Fprintf(os.Stderr, "track-controller: --router-image is required outside a Pod: the image with haproxy and trackrouter for the HAProxy tier\nSee 'track-controller --help'.\n")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := controller.Execute(ctx, cfg, log); err != nil {
		log.Error("track-controller", "err", err)
		stop()
		os.Exit(1)
	}
}
