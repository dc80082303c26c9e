package controller

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trackrouter/trackrouter/internal/kube"
)

// Config is track-controller's command line.
type Config struct {
	Kubeconfig     string // empty: in-cluster
	Namespace      string // empty: all namespaces
	RouterImage    string
	Workers        int
	MetricsAddr    string
	LeaderElect    bool
	LeaseNamespace string
	LeaseName      string
}

// Execute runs track-controller until ctx ends.
func Execute(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.RouterImage == "" {
		return errors.New("--router-image is required: the image with haproxy and trackrouter for the HAProxy tier")
	}
	rc, err := kube.Config(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	// Deployment names carry versions with dots; say so once, not per write.
	rc.WarningHandler = rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true})
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	factories := NewFactories(client, cfg.Namespace, 0)
	ctrl := New(client, factories.Informers(), Options{RouterImage: cfg.RouterImage, Log: log})
	var leading atomic.Bool
	if cfg.MetricsAddr != "" {
		go serve(ctx, cfg.MetricsAddr, ctrl, &leading, log)
	}
	var runErr error
	run := func(ctx context.Context) {
		leading.Store(true)
		factories.Start(ctx.Done())
		defer factories.Shutdown()
		runErr = ctrl.Run(ctx, cfg.Workers)
	}
	if !cfg.LeaderElect {
		run(ctx)
		return runErr
	}
	id, err := os.Hostname()
	if err != nil {
		return err
	}
	RunAsLeader(ctx, client, LeaderElection{Namespace: cfg.LeaseNamespace, Name: cfg.LeaseName, Identity: id}, log, run)
	if runErr != nil {
		return runErr
	}
	if ctx.Err() == nil {
		return errors.New("lost the leader lease")
	}
	return nil
}

// serve exposes /metrics, /healthz and /readyz (ready once caches synced,
// or as a follower).
func serve(ctx context.Context, addr string, c *Controller, leading *atomic.Bool, log *slog.Logger) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trackcontroller_writes_total", Help: "Creates, updates and deletes of owned objects."},
			func() float64 { return float64(c.Writes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trackcontroller_syncs_total", Help: "Finished syncs of service specs."},
			func() float64 { return float64(c.Syncs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trackcontroller_leader", Help: "1 while this replica is the leader."},
			func() float64 {
				if leading.Load() {
					return 1
				}
				return 0
			}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, synced := range c.synced {
			if leading.Load() && !synced() {
				http.Error(w, "caches not synced", http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("metrics listener", "err", err)
		return
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	srv.Serve(ln)
}
