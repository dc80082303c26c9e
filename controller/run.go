package controller

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trackrouter/trackrouter/internal/health"
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serveErr := make(chan error, 1)
	if cfg.MetricsAddr != "" {
		go func() {
			err := health.Serve(ctx, cfg.MetricsAddr, registry(ctrl, &leading), func() error { return ctrl.notReady(leading.Load()) }, log)
			serveErr <- err
			cancel() // without its probes the process must not run on
		}()
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
	} else {
		id, err := os.Hostname()
		if err != nil {
			return err
		}
		RunAsLeader(ctx, client, LeaderElection{Namespace: cfg.LeaseNamespace, Name: cfg.LeaseName, Identity: id}, log, run)
	}
	select {
	case err := <-serveErr:
		if err != nil {
			return err
		}
	default:
	}
	if runErr != nil {
		return runErr
	}
	if cfg.LeaderElect && ctx.Err() == nil {
		return errors.New("lost the leader lease")
	}
	return nil
}

// registry holds the controller's metrics.
func registry(c *Controller, leading *atomic.Bool) *prometheus.Registry {
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
	return reg
}

// notReady: a leader is ready once its caches synced; a follower is ready.
func (c *Controller) notReady(leading bool) error {
	for _, synced := range c.synced {
		if leading && !synced() {
			return errors.New("caches not synced")
		}
	}
	return nil
}
