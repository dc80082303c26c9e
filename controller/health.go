package controller

import (
	"context"
	"encoding/json"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackrouter/trackrouter/internal/fleet"
)

// staleReport is how long a report may name a pod that no cache holds
// before the controller removes it: a new pod's sidecar may report before
// the pod reaches the cache.
const staleReport = 5 * time.Minute

// evaluateHealth judges every spec's health from the caches, keeps it for
// the metrics, tells the Alerter, and removes reports of pods long gone.
func (c *Controller) evaluateHealth(ctx context.Context) {
	objs, err := c.healthObjects()
	if err != nil {
		c.log.Error("health: read the caches", "err", err)
		return
	}
	hs := fleet.Evaluate(objs, fleet.Options{MinEndpoints: c.opt.MinEndpoints})
	c.health.Store(&hs)
	if c.fence() != nil {
		return // a follower neither alerts nor writes
	}
	if c.opt.Alerter != nil {
		c.opt.Alerter.Observe(hs, time.Now())
	}
	c.pruneReports(ctx, objs)
}

func (c *Controller) healthObjects() (fleet.Objects, error) {
	return fleet.Listers{Specs: c.configMaps, Status: c.statusMaps, Deployments: c.labeled, EndpointSlices: c.slices, Pods: c.routerPods}.Objects()
}

// pruneReports removes from the status ConfigMaps the keys of pods that
// have not existed for staleReport (a merge patch: each key belongs to its
// sidecar's field manager, which an apply could not take away).
func (c *Controller) pruneReports(ctx context.Context, objs fleet.Objects) {
	pods := make(map[string]bool, len(objs.Pods))
	for _, p := range objs.Pods {
		pods[p.Namespace+"/"+p.Name] = true
	}
	for _, st := range objs.Status {
		if st.Labels[LabelTier] != TierRouter {
			continue // a release ConfigMap: its keys are no pods'
		}
		reports, bad := fleet.Parse(st.Data)
		gone := map[string]any{}
		for pod, r := range reports {
			if !pods[st.Namespace+"/"+pod] && time.Since(r.Since) > staleReport {
				gone[pod] = nil
			}
		}
		for _, key := range bad {
			if !pods[st.Namespace+"/"+key] {
				gone[key] = nil // garbage under no pod's name: no sidecar will fix it
			}
		}
		if len(gone) == 0 {
			continue
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": st.ResourceVersion}, "data": gone})
		_, err := c.client.CoreV1().ConfigMaps(st.Namespace).Patch(ctx, st.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			c.log.Warn("health: could not remove the reports of gone pods", "configmap", st.Namespace+"/"+st.Name, "err", err)
			continue
		}
		if err == nil {
			c.Writes.Add(1)
			c.log.Info("removed the reports of pods that are gone", "configmap", st.Namespace+"/"+st.Name, "pods", len(gone))
		}
	}
}

// Health returns the last evaluation, nil before the first.
func (c *Controller) Health() []*fleet.Health {
	if p := c.health.Load(); p != nil {
		return *p
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// healthCollector exports the last evaluation of the current term's
// controller as gauges.
type healthCollector struct {
	current func() *Controller
}

var (
	descHealthy   = prometheus.NewDesc("trackcontroller_service_healthy", "1 when every health check of the service passes (trackctl status says ok), else 0.", []string{"namespace", "service"}, nil)
	descProblems  = prometheus.NewDesc("trackcontroller_service_problems", "Problems trackctl status would name for the service.", []string{"namespace", "service"}, nil)
	descEndpoints = prometheus.NewDesc("trackcontroller_track_ready_endpoints", "Ready endpoints of a track's Service.", []string{"namespace", "service", "track"}, nil)
	descPods      = prometheus.NewDesc("trackcontroller_haproxy_pods", "Pods of the service's HAProxy tier.", []string{"namespace", "service"}, nil)
	descOnSpec    = prometheus.NewDesc("trackcontroller_haproxy_pods_on_current_spec", "HAProxy pods whose sidecar reports the spec's current resourceVersion running.", []string{"namespace", "service"}, nil)
	descReady     = prometheus.NewDesc("trackcontroller_haproxy_ready_replicas", "Ready replicas of the service's HAProxy Deployment.", []string{"namespace", "service"}, nil)
)

func (h healthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHealthy, descProblems, descEndpoints, descPods, descOnSpec, descReady} {
		ch <- d
	}
}

func (h healthCollector) Collect(ch chan<- prometheus.Metric) {
	c := h.current()
	if c == nil {
		return
	}
	for _, s := range c.Health() {
		healthy := 0.0
		if s.Healthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy, s.Namespace, s.Service)
		ch <- prometheus.MustNewConstMetric(descProblems, prometheus.GaugeValue, float64(len(s.Problems)), s.Namespace, s.Service)
		ch <- prometheus.MustNewConstMetric(descPods, prometheus.GaugeValue, float64(len(s.HAProxy.Pods)), s.Namespace, s.Service)
		ch <- prometheus.MustNewConstMetric(descOnSpec, prometheus.GaugeValue, float64(s.HAProxy.OnCurrentSpec), s.Namespace, s.Service)
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, float64(s.HAProxy.Ready), s.Namespace, s.Service)
		for _, t := range s.Tracks {
			ch <- prometheus.MustNewConstMetric(descEndpoints, prometheus.GaugeValue, float64(t.ReadyEndpoints), s.Namespace, s.Service, t.Name)
		}
	}
}
