package router

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/trackrouter/trackrouter/haproxyconf"
)

// Metrics are the sidecar's Prometheus metrics, on their own registry.
type Metrics struct {
	Registry       *prometheus.Registry
	Rejected       prometheus.Counter
	RuntimeUpdates prometheus.Counter
	Reloads        *prometheus.CounterVec
	Weights        *prometheus.GaugeVec
	Up             *prometheus.GaugeVec
	ApplyErrors    *prometheus.CounterVec
	InSync         prometheus.Gauge
	ReportErrors   prometheus.Counter
	ReadErrors     prometheus.Counter
	Unreadable     prometheus.Gauge

	weightKeys map[haproxyconf.ServerKey]bool
}

// SpecAge is the age of the spec as the API last confirmed it (a
// ConfigMap source's Checked).
func SpecAge(checked func() time.Time) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "trackrouter_spec_age_seconds",
		Help: "Seconds since the API last confirmed the spec (a watch event or a read); -1 before that.",
	}, func() float64 {
		if t := checked(); !t.IsZero() {
			return time.Since(t).Seconds()
		}
		return -1
	})
}

// NewMetrics registers the sidecar's metrics and the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackrouter_config_rejected_total",
			Help: "Spec versions rejected: an invalid spec, or a config haproxy -c refused. Not retried until the spec changes; the last good config stays. A spec that could not be read is not counted here (trackrouter_spec_read_errors_total).",
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
			Help: "Server weights as HAProxy reports them (show servers state).",
		}, []string{"backend", "server"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trackrouter_server_up",
			Help: "1 when HAProxy may send traffic to the server (its health checks pass, its name resolved, not in maintenance), 0 when not (show servers state).",
		}, []string{"backend", "server"}),
		ApplyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackrouter_apply_errors_total",
			Help: "Operational failures, retried with backoff: unreachable, check (haproxy -c could not run), write, reload, start, runtime, restart.",
		}, []string{"reason"}),
		InSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trackrouter_in_sync",
			Help: "1 when HAProxy runs the latest valid spec (stamp, weights and map as HAProxy reports them) and haproxy.cfg on disk holds it; 0 otherwise.",
		}),
		ReportErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackrouter_status_report_errors_total",
			Help: "Failed writes of this pod's status report to the service's status ConfigMap (--report-configmap), retried with backoff.",
		}),
		ReadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackrouter_spec_read_errors_total",
			Help: "Times the spec source could not be read (a missing file, a directory, a symlink loop, a deleted ConfigMap or key), counted once per distinct error; the last good config stays.",
		}),
		Unreadable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trackrouter_spec_unreadable",
			Help: "1 while the spec source has been unreadable for longer than its settle time (5s): routing stays on the last good config and no edit reaches HAProxy; 0 otherwise.",
		}),
	}
	for _, reason := range []string{"unreachable", "check", "write", "reload", "start", "runtime", "restart"} {
		m.ApplyErrors.WithLabelValues(reason)
	}
	m.Reloads.WithLabelValues("success")
	m.Reloads.WithLabelValues("failure")
	m.Registry.MustRegister(m.Rejected, m.RuntimeUpdates, m.Reloads, m.Weights, m.Up, m.ApplyErrors, m.InSync, m.ReportErrors, m.ReadErrors, m.Unreadable,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setWeights publishes the weights HAProxy reported and whether each
// server takes traffic. The series are only reset when the set of servers
// changes, so a scrape never sees them empty.
func (m *Metrics) setWeights(w map[haproxyconf.ServerKey]int, down map[haproxyconf.ServerKey]string) {
	same := len(w) == len(m.weightKeys)
	for k := range w {
		same = same && m.weightKeys[k]
	}
	if !same {
		m.Weights.Reset()
		m.Up.Reset()
		m.weightKeys = make(map[haproxyconf.ServerKey]bool, len(w))
		for k := range w {
			m.weightKeys[k] = true
		}
	}
	for k, v := range w {
		m.Weights.WithLabelValues(k.Backend, k.Server).Set(float64(v))
		up := 1.0
		if down[k] != "" {
			up = 0
		}
		m.Up.WithLabelValues(k.Backend, k.Server).Set(up)
	}
}
