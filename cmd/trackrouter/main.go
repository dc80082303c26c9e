// Command trackrouter is the sidecar that keeps HAProxy's routing in step
// with a service spec. Run "trackrouter --help" for its flags.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/trackrouter/trackrouter/internal/kube"
	"github.com/trackrouter/trackrouter/internal/version"
	"github.com/trackrouter/trackrouter/router"
)

func main() {
	var cfg router.Config
	fs := pflag.NewFlagSet("trackrouter", pflag.ExitOnError)
	fs.StringVar(&cfg.ServiceFile, "service-file", "", "watch this file holding service.yaml (a mounted ConfigMap key or a plain file)")
	fs.StringVar(&cfg.ConfigMap, "configmap", "", "watch this ConfigMap (NAMESPACE/NAME, key service.yaml) through the API")
	kube.Flags{Kubeconfig: &cfg.Kubeconfig, Context: &cfg.Context, QPS: &cfg.QPS, Burst: &cfg.Burst}.AddTo(fs, "with --configmap")
	fs.StringVar(&cfg.HAProxyConfig, "haproxy-config", "/etc/haproxy/haproxy.cfg", "haproxy.cfg to write; HAProxy must read this file")
	fs.StringVar(&cfg.BaseConfig, "base-config", "", "haproxy.cfg whose global, defaults and other sections are kept (default: built-in defaults)")
	fs.StringVar(&cfg.MasterSocket, "master-socket", "/var/run/haproxy/master.sock", "HAProxy master CLI socket (haproxy -W -S PATH)")
	fs.StringVar(&cfg.Bind, "bind", "", "frontend listen address [host]:port (default \":<port>\" from the spec)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":9101", "serve /metrics, /healthz and /readyz here; empty disables")
	fs.StringVar(&cfg.HAProxyMetricsAddr, "haproxy-metrics-addr", ":8404", "HAProxy serves its Prometheus exporter (requests, responses, times per backend and per track) at /metrics here; empty disables")
	fs.BoolVar(&cfg.RunHAProxy, "run-haproxy", false, "start and supervise HAProxy in master-worker mode (one container)")
	fs.StringVar(&cfg.HAProxyBin, "haproxy-bin", "haproxy", "haproxy executable, for haproxy -c and --run-haproxy")
	fs.StringVar(&cfg.Namespace, "namespace", "", "namespace of the track Services (default: the ConfigMap's, else \"default\")")
	fs.StringVar(&cfg.ClusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain of the track Services")
	fs.DurationVar(&cfg.MinInterval, "min-interval", 50*time.Millisecond, "least time between two applies; edits in between coalesce")
	fs.DurationVar(&cfg.StopGrace, "stop-grace", 30*time.Second, "on SIGTERM with --run-haproxy, how long HAProxy may finish requests")
	fs.BoolVar(&cfg.Once, "once", false, "write a validated haproxy.cfg from the spec and exit (init container)")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "with --once: print the plan (none, runtime or reload, and why) against what HAProxy runs, else the config on disk; write nothing")
	fs.BoolVar(&cfg.Overwrite, "overwrite", false, "replace a --haproxy-config file that trackrouter did not write")
	fs.StringVar(&cfg.GroupsMap, "groups-map", "", "route header groups through this map file (absolute path), so group edits apply at runtime without a reload (default: one ACL per group)")
	fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", 0, "on SIGTERM, fail /readyz at once and keep HAProxy accepting this long before the soft stop (default 5s with --configmap, else 0)")
	fs.DurationVar(&cfg.ReloadTimeout, "reload-timeout", 2*time.Minute, "how long a reload or start may take to show the new config (name resolution at load time can be slow) before it is retried")
	fs.DurationVar(&cfg.Unresponsive, "unresponsive-after", 10*time.Second, "/readyz fails once HAProxy's master socket has not answered for this long")
	fs.DurationVar(&cfg.RestartAfter, "restart-after", 30*time.Second, "with --run-haproxy, kill and start HAProxy again once it has not answered for this long")
	fs.StringVar(&cfg.ReportConfigMap, "report-configmap", "", "with --configmap, write what HAProxy runs (spec version, stamp, live weights, sync, last rejection) to this ConfigMap in the spec's namespace, under the pod's name (track-controller sets it)")
	fs.DurationVar(&cfg.ReportRefresh, "report-refresh", time.Minute, "write the report again this often, so that one deleted or overwritten is restored (a no-op for the API when unchanged)")
	fs.StringVar(&cfg.PodName, "pod-name", os.Getenv("POD_NAME"), "this pod's name, the key of its report (default $POD_NAME)")
	fs.StringVar(&cfg.LatencyLog, "latency-log", "", "where HAProxy's request log goes, read for each track's latency in the canary analysis (served with the counts at /samples on --metrics-addr): by default a pipe with --run-haproxy (the cheapest for HAProxy), else latency.sock beside --master-socket; a path: that unix datagram socket; \"off\": no request log, /samples serves the counts only")
	fs.IntVar(&cfg.LatencySample, "latency-sample", 1, "log one request in N for the latency (1: every one); the counts are never sampled. Each logged request costs HAProxy ~6 µs of CPU (+9% per request at saturation on 2 cores); 4 brings that under 1% with 4 times fewer latency samples")
	fs.StringVar(&cfg.AdvertiseHost, "advertise-host", os.Getenv("POD_IP"), "the host (this pod's IP) at which the board reads /samples on --metrics-addr, told in the pod's report (default $POD_IP; track-controller reads /samples at the Pod's IP from the API server and the port named metrics)")
	fs.DurationVar(&cfg.SpecStale, "spec-stale-after", 2*time.Minute, "with --configmap, /readyz fails once the API has not confirmed the spec for this long")
	demoMode := fs.Bool("demo", false, "run locally: HAProxy, demo backends and the example spec in --demo-dir")
	demoDir := fs.String("demo-dir", filepath.Join(os.TempDir(), "trackrouter-demo"), "working directory of --demo")
	debug := fs.Bool("debug", false, "log at debug level (the same as --log-level debug)")
	logLevel := fs.String("log-level", "info", "log at this level and above: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "trackrouter keeps HAProxy's routing in step with a service spec: weight edits go\n"+
			"through the Runtime API, other edits through a checked, confirmed hot reload,\n"+
			"and an invalid spec changes nothing.\n\nUsage: trackrouter (--service-file PATH | --configmap NS/NAME | --demo) [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version.String("trackrouter"))
		return
	}
	if !fs.Changed("shutdown-delay") && cfg.ConfigMap != "" {
		cfg.ShutdownDelay = 5 * time.Second
	}
	if err := usageError(fs, cfg, *demoMode); err != nil {
		fmt.Fprintf(os.Stderr, "trackrouter: %v\nSee 'trackrouter --help'.\n", err)
		os.Exit(2)
	}
	if *demoMode && !fs.Changed("metrics-addr") {
		cfg.MetricsAddr = "127.0.0.1:9101" // the demo is local
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "trackrouter: --log-level %q: want debug, info, warn or error\nSee 'trackrouter --help'.\n", *logLevel)
		os.Exit(2)
	}
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A second signal is not caught: it ends the shutdown delay and the
	// soft stop at once.
	context.AfterFunc(ctx, stop)
	if *demoMode {
		stopDemo, err := setupDemo(&cfg, *demoDir, fs.Changed, os.Stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "trackrouter --demo: %v\n", err)
			os.Exit(1)
		}
		defer stopDemo()
	}
	if err := router.Run(ctx, cfg, log); err != nil {
		log.Error("trackrouter", "err", err)
		stop()
		os.Exit(1)
	}
}

// usageError says what is wrong with the command line, before anything runs.
func usageError(fs *pflag.FlagSet, cfg router.Config, demoMode bool) error {
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q: trackrouter takes flags only", fs.Arg(0))
	case demoMode && (cfg.ServiceFile != "" || cfg.ConfigMap != ""):
		return fmt.Errorf("--demo uses its own spec in --demo-dir: drop --service-file and --configmap")
	case demoMode:
		return nil
	}
	return cfg.Validate()
}
