package router

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trackrouter/trackrouter/haproxyconf"
)

// Metrics are the sidecar's Prometheus metrics, on their own registry.
type Metrics struct {
	Registry       *prometheus.Registry
	Rejected       prometheus.Counter
	RuntimeUpdates prometheus.Counter
	Reloads        *prometheus.CounterVec
	Weights        *prometheus.GaugeVec
}

// NewMetrics registers the sidecar's metrics and the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackrouter_config_rejected_total",
			Help: "Spec versions rejected (invalid spec, or its config failed haproxy -c); the last good config stayed.",
		}),
		RuntimeUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackrouter_runtime_updates_total",
			Help: "Spec changes applied through the Runtime API without a reload (weights only).",
		}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackrouter_reloads_total",
			Help: "HAProxy reloads (and starts), by result as confirmed by the master's show proc.",
		}, []string{"result"}),
		Weights: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trackrouter_server_weight",
			Help: "Server weights as applied to HAProxy.",
		}, []string{"backend", "server"}),
	}
	m.Reloads.WithLabelValues("success")
	m.Reloads.WithLabelValues("failure")
	m.Registry.MustRegister(m.Rejected, m.RuntimeUpdates, m.Reloads, m.Weights,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) setWeights(w map[haproxyconf.ServerKey]int) {
	m.Weights.Reset()
	for k, v := range w {
		m.Weights.WithLabelValues(k.Backend, k.Server).Set(float64(v))
	}
}

// Serve serves /metrics, /healthz (the process is alive) and /readyz
// (ready() is true) on addr until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string, ready func() bool, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready: no valid config applied, or haproxy not running", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Info("serving metrics and health", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
