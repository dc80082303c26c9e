package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/health"
	"github.com/trackrouter/trackrouter/internal/kube"
	"github.com/trackrouter/trackrouter/router/haproxy"
	"github.com/trackrouter/trackrouter/router/report"
	"github.com/trackrouter/trackrouter/router/samples"
	"github.com/trackrouter/trackrouter/router/source"
	"github.com/trackrouter/trackrouter/weights"
)

// Config is everything the sidecar is told on its command line.
type Config struct {
	ServiceFile   string        // watch this file (a mounted ConfigMap key, or a plain file)
	ConfigMap     string        // or watch this ConfigMap, "namespace/name"
	Context       string        // kubeconfig context; empty means the current one
	Kubeconfig    string        // for ConfigMap; empty means in-cluster
	HAProxyConfig string        // the haproxy.cfg to write
	BaseConfig    string        // optional base haproxy.cfg
	MasterSocket  string        // HAProxy's master CLI socket
	Bind          string        // frontend listen address; empty means ":<port>"
	MetricsAddr   string        // /metrics, /healthz, /readyz; empty disables
	RunHAProxy    bool          // start and supervise HAProxy
	HAProxyBin    string        // haproxy executable
	Namespace     string        // of the track Services; empty means the ConfigMap's
	ClusterDomain string        // of the track Services
	MinInterval   time.Duration // between two applies
	StopGrace     time.Duration // soft-stop budget for a supervised HAProxy
	Once          bool          // write a validated config and exit (an init container)
	DryRun        bool          // with Once: print the plan against what HAProxy runs; write nothing, touch nothing
	Overwrite     bool          // replace a haproxy.cfg that trackrouter did not write
	GroupsMap     string        // route groups through this map file, changed at runtime
	ShutdownDelay time.Duration // on SIGTERM: not ready at once, HAProxy keeps accepting this long, then soft-stops
	ReloadTimeout time.Duration // how long a reload or start may take to show its stamp
	Unresponsive  time.Duration // not ready once the master socket is silent this long
	RestartAfter  time.Duration // with RunHAProxy: restart HAProxy once it is silent this long
	SpecStale     time.Duration // --configmap: not ready once the API has not confirmed the spec this long
	QPS           float32       // client-side rate limit of API requests (--configmap)
	Burst         int
	// ReportConfigMap, with ConfigMap: write what HAProxy runs to this
	// ConfigMap (in the spec's namespace) under PodName.
	ReportConfigMap string
	PodName         string
	ReportRefresh   time.Duration // how often the report is written again; default 1m
	// HAProxyMetricsAddr, when set, is where HAProxy serves its Prometheus
	// exporter (per-backend and per-server, so per-track, traffic).
	HAProxyMetricsAddr string
	// LatencyLog is where HAProxy's request log goes, read for the
	// latency of each track (router/samples): "" means a pipe when the
	// sidecar runs HAProxy (RunHAProxy; the cheapest for HAProxy), else
	// latency.sock beside the master socket; a path, that unix datagram
	// socket; "off" none. Only with MetricsAddr, where /samples is served.
	LatencyLog string
	// LatencySample, above 1, logs one request in that many (the latency
	// sample thins, HAProxy's cost of the log falls as much).
	LatencySample int
	// AdvertiseHost is the host (the pod's IP) at which others reach
	// MetricsAddr, told in the report as the /samples URL; empty means
	// MetricsAddr's host, when it has one.
	AdvertiseHost string
}

// latencyPipe reports whether the request log is a pipe to HAProxy's
// file descriptor haproxy.LogFD.
func (c *Config) latencyPipe() bool {
	return c.LatencyLog == "" && c.MetricsAddr != "" && c.RunHAProxy
}

// latencyLog is the request log socket's path, "" for none (or a pipe).
func (c *Config) latencyLog() string {
	switch {
	case c.LatencyLog == "off" || c.MetricsAddr == "" || c.latencyPipe():
		return ""
	case c.LatencyLog != "":
		return c.LatencyLog
	case c.MasterSocket != "" && filepath.IsAbs(c.MasterSocket):
		return filepath.Join(filepath.Dir(c.MasterSocket), "latency.sock")
	}
	return ""
}

// samplesURL is where others read this sidecar's /samples, "" when it
// cannot say.
func (c *Config) samplesURL() string {
	if c.MetricsAddr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(c.MetricsAddr)
	if err != nil {
		return ""
	}
	if c.AdvertiseHost != "" {
		host = c.AdvertiseHost
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		return ""
	}
	return "http://" + net.JoinHostPort(host, port) + samples.Path
}

// Validate checks the combination of settings.
func (c *Config) Validate() error {
	var errs []string
	if (c.ServiceFile == "") == (c.ConfigMap == "") {
		errs = append(errs, "give exactly one of --service-file and --configmap (or --demo to try it locally)")
	}
	if c.ConfigMap != "" {
		if ns, name, ok := strings.Cut(c.ConfigMap, "/"); !ok || ns == "" || name == "" {
			errs = append(errs, fmt.Sprintf("--configmap %q: want NAMESPACE/NAME", c.ConfigMap))
		}
	}
	if c.ReportConfigMap != "" && (c.ConfigMap == "" || strings.TrimSpace(c.PodName) == "") {
		errs = append(errs, "--report-configmap needs --configmap and --pod-name (default $POD_NAME, from the downward API)")
	}
	if c.ReportConfigMap != "" {
		_, specName, _ := strings.Cut(c.ConfigMap, "/")
		switch {
		case !weights.IsDomain(c.ReportConfigMap):
			errs = append(errs, fmt.Sprintf("--report-configmap %q is not a ConfigMap name", c.ReportConfigMap))
		case c.ReportConfigMap == specName:
			errs = append(errs, "--report-configmap names the spec's own ConfigMap: give the reports one of their own (<service>-haproxy-status)")
		}
		if c.PodName != "" && !weights.IsDomain(c.PodName) {
			errs = append(errs, fmt.Sprintf("--pod-name %q is not a pod name", c.PodName))
		}
	}
	if a := c.HAProxyMetricsAddr; a != "" {
		if err := haproxyconf.CheckBind(a); err != nil {
			errs = append(errs, "--haproxy-metrics-addr: "+err.Error())
		} else if c.MetricsAddr != "" && haproxyconf.SamePort(a, c.MetricsAddr) {
			errs = append(errs, fmt.Sprintf("--haproxy-metrics-addr %s and --metrics-addr %s share a port: give each its own", a, c.MetricsAddr))
		} else if c.Bind != "" && haproxyconf.SamePort(a, c.Bind) {
			errs = append(errs, fmt.Sprintf("--haproxy-metrics-addr %s and --bind %s share a port", a, c.Bind))
		}
	}
	if c.DryRun && !c.Once {
		errs = append(errs, "--dry-run needs --once: it prints what one pass would do")
	}
	if c.GroupsMap != "" {
		if err := haproxyconf.CheckMapPath(c.GroupsMap); err != nil {
			errs = append(errs, "--groups-map: "+err.Error())
		}
	}
	if l := c.latencyLog(); l != "" {
		if err := haproxyconf.CheckMapPath(l); err != nil {
			errs = append(errs, "--latency-log: "+strings.Replace(err.Error(), "groups map path", "path", 1))
		}
	}
	if c.LatencySample < 0 || c.LatencySample > 1000 {
		errs = append(errs, fmt.Sprintf("--latency-sample %d: 1 (every request; 0 means 1 too) to 1000", c.LatencySample))
	}
	if c.HAProxyConfig == "" {
		errs = append(errs, "--haproxy-config is required")
	}
	if c.MasterSocket == "" && !c.Once {
		errs = append(errs, "--master-socket is required")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Run runs the sidecar until ctx ends. On the end of ctx it first makes
// /readyz fail and lets HAProxy accept for ShutdownDelay, so that clients
// are moved off this pod before it stops accepting.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// haproxy -S takes a relative path for an address ("missing port
	// specification"): every path HAProxy is given is made absolute.
	for _, p := range []*string{&cfg.MasterSocket, &cfg.HAProxyConfig} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return err
			}
			*p = abs
		}
	}
	opts := renderOptions(cfg)
	if cfg.BaseConfig != "" {
		b, err := os.ReadFile(cfg.BaseConfig)
		if err != nil {
			return fmt.Errorf("read base config: %w", err)
		}
		opts.Base = string(b)
	}
	for _, f := range []string{cfg.HAProxyConfig, cfg.GroupsMap, cfg.MasterSocket} {
		if f == "" || cfg.DryRun {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
	}
	if err := checkOwnFile(cfg.HAProxyConfig, cfg.Overwrite || cfg.DryRun); err != nil {
		return err
	}
	bin, err := haproxyconf.FindBinary(cfg.HAProxyBin)
	if err != nil {
		return err
	}
	cfg.HAProxyBin = bin
	if !cfg.DryRun {
		release, err := lockConfig(cfg.HAProxyConfig)
		if err != nil {
			return err
		}
		defer release()
	}
	if !cfg.Once {
		// Two sidecars on one HAProxy would set each other's weights back.
		releaseSocket, err := lockConfig(cfg.MasterSocket)
		if err != nil {
			return err
		}
		defer releaseSocket()
	}
	src, rejecter, err := newSource(cfg, log)
	if err != nil {
		return err
	}
	if rejecter != nil {
		defer rejecter.Stop()
	}
	// The check's file goes beside the config: that directory is writable
	// wherever the sidecar runs (/tmp is not in a read-only pod).
	checker := haproxyconf.Checker{Binary: cfg.HAProxyBin, Timeout: cfg.ReloadTimeout, Dir: filepath.Dir(cfg.HAProxyConfig)}
	if cfg.Once {
		return once(ctx, src, opts, checker, cfg)
	}

	r := &Router{
		ConfigPath:        cfg.HAProxyConfig,
		Render:            opts,
		Checker:           checker,
		HAProxy:           &haproxy.MasterCLI{Socket: cfg.MasterSocket},
		Metrics:           NewMetrics(),
		Log:               log,
		MinInterval:       cfg.MinInterval,
		ReloadTimeout:     cfg.ReloadTimeout,
		UnresponsiveAfter: cfg.Unresponsive,
		RestartAfter:      cfg.RestartAfter,
		StartFromDisk:     cfg.RunHAProxy,
	}
	var sup *haproxy.Supervisor
	if cfg.RunHAProxy {
		sup = &haproxy.Supervisor{Binary: cfg.HAProxyBin, Config: cfg.HAProxyConfig, Socket: cfg.MasterSocket, Log: log}
		r.Process = sup
	}
	if rejecter != nil {
		r.Rejecter = rejecter
	}
	if cm, ok := src.(*source.ConfigMapSource); ok {
		r.SpecChecked, r.SpecStaleAfter = cm.Checked, cfg.SpecStale
		r.Accept = cm.Accept
		r.Metrics.Registry.MustRegister(SpecAge(cm.Checked))
	}
	inner, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(inner)
	// The request log socket stays open until haproxy has stopped (after
	// the group): its soft stop logs to it (HAProxy's "sendmsg() failed in
	// logger" ALERT otherwise).
	collectorCtx, stopCollector := context.WithCancel(context.Background())
	defer stopCollector()
	collectorDone := make(chan error, 1)
	collectorDone <- nil
	// The samples (the request log's reader) and the Reporter are set up
	// before the router runs: Run reads SamplesURL and Reporter.
	var routes []health.Route
	if cfg.MetricsAddr != "" && cfg.MasterSocket != "" {
		// /samples serves the counts always; the latencies when the
		// request log is on (--latency-log off: counts only).
		var c *samples.Collector
		var err error
		switch path := cfg.latencyLog(); {
		case cfg.latencyPipe():
			var w *os.File
			if c, w, err = samples.Pipe(); err != nil {
				return err
			}
			defer w.Close()
			sup.LogPipe = w
		case path != "":
			if c, err = samples.Listen(path); err != nil {
				return err
			}
		}
		if c != nil {
			<-collectorDone
			go func() { collectorDone <- c.Run(collectorCtx) }()
		}
		routes = append(routes, health.Route{Path: samples.Path, Handler: samples.Handler(&haproxy.MasterCLI{Socket: cfg.MasterSocket, Timeout: 2 * time.Second}, c)})
		r.SamplesURL = cfg.samplesURL()
		if r.SamplesURL == "" && cfg.ReportConfigMap != "" {
			log.Warn("this pod's report names no samples URL, so trackctl board cannot show its samples: --metrics-addr "+cfg.MetricsAddr+
				" has no host and neither --advertise-host nor $POD_IP is set (set POD_IP from the field status.podIP, as the tier track-controller makes does)",
				"metrics-addr", cfg.MetricsAddr)
		}
	}
	if cm, ok := src.(*source.ConfigMapSource); ok && cfg.ReportConfigMap != "" {
		rep := &report.StatusReporter{Client: cm.Client, Namespace: cm.Namespace, Name: cfg.ReportConfigMap, Pod: cfg.PodName, Log: log, Failed: r.Metrics.ReportErrors.Inc, Refresh: cfg.ReportRefresh}
		r.Reporter = rep
		g.Go(func() error { return rep.Run(gctx) })
	}
	g.Go(func() error { return r.Run(gctx) })
	g.Go(func() error { return src.Run(gctx, r.Submit) })
	if cfg.MetricsAddr != "" {
		g.Go(func() error {
			return health.Serve(gctx, cfg.MetricsAddr, r.Metrics.Registry, r.NotReady, log, routes...)
		})
	}
	select {
	case <-ctx.Done():
	case <-gctx.Done():
	}
	r.Stopping()
	if ctx.Err() != nil && gctx.Err() == nil && cfg.ShutdownDelay > 0 {
		log.Info("stopping: /readyz fails now; HAProxy keeps accepting for the shutdown delay", "delay", cfg.ShutdownDelay.String())
		select {
		case <-time.After(cfg.ShutdownDelay):
		case <-gctx.Done():
		}
	}
	cancel()
	err = g.Wait()
	if sup != nil && sup.Running() {
		log.Info("stopping haproxy (soft stop)", "grace", cfg.StopGrace)
		sup.Stop(cfg.StopGrace)
	}
	stopCollector()
	if cerr := <-collectorDone; cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// checkOwnFile refuses to run on a haproxy.cfg that trackrouter did not
// write (say the machine's /etc/haproxy/haproxy.cfg), unless told to.
func checkOwnFile(path string, overwrite bool) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // absent (or unreadable: the write will say so)
	}
	defer f.Close()
	head := make([]byte, len(haproxyconf.HeaderPrefix))
	n, _ := io.ReadFull(f, head)
	if overwrite || n == 0 || string(head[:n]) == haproxyconf.HeaderPrefix {
		return nil
	}
	return fmt.Errorf("%s was not written by trackrouter (it does not start with %q): refusing to overwrite it; give --haproxy-config a path of its own, or pass --overwrite", path, haproxyconf.HeaderPrefix)
}

func renderOptions(cfg Config) haproxyconf.Options {
	o := haproxyconf.Options{Namespace: cfg.Namespace, ClusterDomain: cfg.ClusterDomain, Bind: cfg.Bind, GroupsMap: cfg.GroupsMap, MetricsBind: cfg.HAProxyMetricsAddr,
		LatencyLog: cfg.latencyLog(), LatencySample: cfg.LatencySample}
	if cfg.latencyPipe() {
		o.LatencyFD = haproxy.LogFD
	}
	return o
}

// specSource is where specs come from.
type specSource interface {
	Run(ctx context.Context, submit func(Update)) error
}

func newSource(cfg Config, log *slog.Logger) (specSource, *source.EventRejecter, error) {
	if cfg.ServiceFile != "" {
		return &source.FileSource{Path: cfg.ServiceFile, Log: log}, nil, nil
	}
	ns, name, _ := strings.Cut(cfg.ConfigMap, "/")
	rc, err := kube.Config(cfg.Kubeconfig, cfg.Context)
	if err != nil {
		return nil, nil, err
	}
	kube.SetRate(rc, cfg.QPS, cfg.Burst)
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	s := &source.ConfigMapSource{Client: client, Namespace: ns, Name: name, Log: log}
	return s, s.Recorder("trackrouter"), nil
}

// once renders the first spec version the source delivers, checks it with
// haproxy -c and writes it: what an init container does before HAProxy
// starts in the two-container deployment.
func once(ctx context.Context, s specSource, opts haproxyconf.Options, checker haproxyconf.Checker, cfg Config) error {
	path := cfg.HAProxyConfig
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	first := make(chan Update, 1)
	go s.Run(ctx, func(u Update) {
		select {
		case first <- u:
		default:
		}
	})
	var u Update
	select {
	case u = <-first:
	case <-ctx.Done():
		return fmt.Errorf("no spec within a minute: %w", ctx.Err())
	}
	if u.Err != nil {
		return fmt.Errorf("%s: %w", u.Source, u.Err)
	}
	r := &Router{Render: opts, Checker: checker, ConfigPath: path}
	t, err := r.prepare(&u)
	if err != nil {
		return err
	}
	if err := r.check(ctx, t); err != nil {
		return err
	}
	if cfg.DryRun {
		return dryRun(ctx, os.Stdout, t, cfg)
	}
	if t.Map != nil {
		if err := writeAtomic(opts.GroupsMap, t.Map); err != nil {
			return err
		}
	}
	if err := writeAtomic(path, t.Config); err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "wrote %s (service %s, %s)\n", path, t.spec.Service, t.Stamp)
	return nil
}

// dryRun prints the plan of one pass for t: against what HAProxy runs when
// its master socket answers (the same plan the loop would act on), else
// against the config on disk. It writes nothing and touches nothing.
func dryRun(ctx context.Context, w io.Writer, t *target, cfg Config) error {
	fmt.Fprintf(w, "service %s renders %s (haproxy -c passed)\n", t.spec.Service, t.Stamp)
	cli := &haproxy.MasterCLI{Socket: cfg.MasterSocket, Timeout: 2 * time.Second}
	obs, err := cli.Observe(ctx, cfg.GroupsMap)
	switch {
	case cfg.MasterSocket == "":
		fmt.Fprintf(w, "no --master-socket: compared with %s\n", cfg.HAProxyConfig)
	case err != nil:
		fmt.Fprintf(w, "HAProxy at %s does not answer (%v): compared with %s\n", cfg.MasterSocket, err, cfg.HAProxyConfig)
	default:
		p := plan(obs, t.Rendered)
		fmt.Fprintf(w, "HAProxy at %s runs %s\nplan: %s: %s\n", cfg.MasterSocket, orNone(obs.Stamp), p.Action, p.Why)
		fmt.Fprintln(w, "dry run: nothing written, HAProxy untouched")
		return nil
	}
	disk, err := os.ReadFile(cfg.HAProxyConfig)
	switch {
	case err != nil:
		fmt.Fprintf(w, "plan: write %s (it cannot be read: %v)\n", cfg.HAProxyConfig, err)
	case bytes.Equal(disk, t.Config):
		fmt.Fprintf(w, "plan: none: %s holds this config\n", cfg.HAProxyConfig)
	default:
		onDisk, how := stampOf(disk), "a reload"
		if onDisk == t.Stamp {
			how = "weights only: the Runtime API, no reload"
		}
		if onDisk == "" {
			onDisk = "a config trackrouter did not stamp"
		}
		fmt.Fprintf(w, "plan: write %s (it holds %s), then %s\n", cfg.HAProxyConfig, onDisk, how)
	}
	fmt.Fprintln(w, "dry run: nothing written, HAProxy untouched")
	return nil
}
