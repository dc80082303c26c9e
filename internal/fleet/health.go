package fleet

import (
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/weights"
)

// Labels track-controller puts on what it creates: the contract's.
const (
	labelApp     = contract.LabelApp
	labelTier    = contract.LabelTier
	labelTrack   = contract.LabelTrack
	labelVersion = contract.LabelVersion
	tierService  = contract.TierService
	tierRouter   = contract.TierRouter
)

// Objects are what the health of services is judged from: lists of the
// cluster's objects, from the API (trackctl status) or an informer cache
// (track-controller). Only the ones of the services judged matter.
type Objects struct {
	Specs          []*corev1.ConfigMap // labelled trackrouter.dev/service
	Status         []*corev1.ConfigMap // the HAProxy tiers' status ConfigMaps
	Deployments    []*appsv1.Deployment
	EndpointSlices []*discoveryv1.EndpointSlice
	Pods           []*corev1.Pod // the HAProxy tiers' pods
}

// Options tune the checks.
type Options struct {
	// MinEndpoints is the least ready endpoints a track needs (default 2),
	// or its replicas when the spec asks for fewer.
	MinEndpoints int
}

// Health is the state of one service, as trackctl status -o json prints it.
// Field names are stable; fields may be added.
type Health struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	ConfigMap string `json:"configMap"`
	// ResourceVersion of the spec ConfigMap: the spec pods should run.
	ResourceVersion string `json:"resourceVersion"`
	Healthy         bool   `json:"healthy"`
	// Problems says what is wrong, one sentence each; empty when healthy.
	Problems []string `json:"problems"`
	// SpecError is why the spec is invalid; "" when it is valid.
	SpecError string        `json:"specError,omitempty"`
	HAProxy   HAProxyHealth `json:"haproxy"`
	Tracks    []TrackHealth `json:"tracks"`
	// Leftovers are Deployments with the service's labels that the spec
	// does not ask for (an old version still running, a removed track).
	Leftovers []DeploymentState `json:"leftovers,omitempty"`
	Backends  []BackendHealth   `json:"backends"`
	// Release is the release the pipeline runs or last ran; nil without
	// one.
	Release *pipeline.Status `json:"release,omitempty"`
}

// HAProxyHealth is the HAProxy tier.
type HAProxyHealth struct {
	Deployment string `json:"deployment"`
	Ready      int32  `json:"ready"`
	Desired    int32  `json:"desired"`
	// OnCurrentSpec counts the pods whose HAProxy runs the spec's
	// resourceVersion, as they report it; Pods counts the tier's pods.
	OnCurrentSpec int        `json:"onCurrentSpec"`
	Pods          []PodState `json:"pods"`
}

// PodState is one HAProxy pod and its report.
type PodState struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
	// Report is nil when the pod has not reported.
	Report *Report `json:"report"`
	// Current: the report names the spec's resourceVersion.
	Current bool `json:"current"`
}

// TrackHealth is one track.
type TrackHealth struct {
	Name           string            `json:"name"`
	Version        string            `json:"version"`  // in the spec
	Replicas       *int32            `json:"replicas"` // in the spec; null when autoscaled
	ReadyEndpoints int               `json:"readyEndpoints"`
	MinEndpoints   int               `json:"minEndpoints"`
	Deployments    []DeploymentState `json:"deployments"` // running versions
}

// DeploymentState is one Deployment of a track.
type DeploymentState struct {
	Name     string `json:"name"`
	Track    string `json:"track"`
	Version  string `json:"version"`
	Replicas int32  `json:"replicas"` // desired
	Ready    int32  `json:"ready"`
}

// BackendHealth is a backend's weights: in the spec, and live on the pods.
type BackendHealth struct {
	Name    string         `json:"name"`
	Servers []ServerHealth `json:"servers"`
}

// ServerHealth is one track in a backend.
type ServerHealth struct {
	Track  string  `json:"track"`
	Weight int     `json:"weight"` // in the spec
	Share  float64 `json:"share"`  // percent, from the spec's weights
	// Live maps each weight HAProxy pods report to how many pods run it.
	Live map[int]int `json:"live"`
	// Down maps why HAProxy sends the server no traffic ("down", "no
	// address", "maintenance") to how many pods say so.
	Down map[string]int `json:"down,omitempty"`
}

// Evaluate judges every service whose spec is in objs.
func Evaluate(objs Objects, opt Options) []*Health {
	if opt.MinEndpoints == 0 {
		opt.MinEndpoints = 2
	}
	var out []*Health
	for _, cm := range objs.Specs {
		out = append(out, evaluate(cm, objs, opt))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Service < out[j].Service
	})
	return out
}

func evaluate(cm *corev1.ConfigMap, objs Objects, opt Options) *Health {
	h := &Health{Namespace: cm.Namespace, Service: cm.Labels[weights.ServiceLabel], ConfigMap: cm.Name, ResourceVersion: cm.ResourceVersion,
		Problems: []string{}, Tracks: []TrackHealth{}, Backends: []BackendHealth{}}
	spec := h.judgeSpec(cm)
	h.judgeTier(cm, objs, spec)
	h.judgeTracks(cm, objs, spec, opt)
	h.liveWeights(spec)
	h.release(cm, objs, spec)
	h.Healthy = len(h.Problems) == 0
	return h
}

// problem adds a problem, in words.
func (h *Health) problem(format string, args ...any) {
	h.Problems = append(h.Problems, fmt.Sprintf(format, args...))
}

// judgeSpec parses the spec; an invalid one is a problem, and nil.
func (h *Health) judgeSpec(cm *corev1.ConfigMap) *weights.Spec {
	src := weights.ConfigMapSource(cm.Namespace, cm.Name)
	var spec *weights.Spec
	if data, ok := cm.Data[weights.DataKey]; !ok {
		h.SpecError = fmt.Sprintf("no key %s", weights.DataKey)
	} else if s, err := weights.ParseService(src, []byte(data)); err != nil {
		h.SpecError = err.Error()
	} else if s.Service != h.Service {
		h.SpecError = fmt.Sprintf("label %s=%s does not match service %q", weights.ServiceLabel, h.Service, s.Service)
	} else {
		spec = s
	}
	if h.SpecError != "" {
		h.problem("invalid spec: %s", firstLine(h.SpecError))
	}

	return spec
}

// judgeTier judges the HAProxy tier: its pods, and what each reports it runs.
func (h *Health) judgeTier(cm *corev1.ConfigMap, objs Objects, spec *weights.Spec) {
	tier := contract.TierName(h.Service)
	h.HAProxy.Deployment = tier
	for _, d := range objs.Deployments {
		if d.Namespace == cm.Namespace && d.Name == tier {
			h.HAProxy.Desired = replicas(d)
			h.HAProxy.Ready = d.Status.ReadyReplicas
		}
	}
	if spec != nil && h.HAProxy.Desired == 0 && spec.Router.Replicas > 0 {
		h.HAProxy.Desired = int32(spec.Router.Replicas)
	}
	if h.HAProxy.Ready < h.HAProxy.Desired {
		h.problem("HAProxy tier: %d of %d pods ready", h.HAProxy.Ready, h.HAProxy.Desired)
	}
	var reports map[string]*Report
	statusFound := false
	for _, st := range objs.Status {
		if st.Namespace == cm.Namespace && st.Name == StatusName(tier) {
			statusFound = true
			var bad []string
			reports, bad = Parse(st.Data)
			for _, key := range bad {
				h.problem("the status ConfigMap %s holds an unreadable report under the key %s (written by hand?)", StatusName(tier), key)
			}
		}
	}
	if !statusFound && h.SpecError == "" && h.HAProxy.Desired > 0 {
		h.problem("no status ConfigMap %s labelled by track-controller: the HAProxy pods' reports cannot be read (is the controller running?)", StatusName(tier))
	}
	for _, p := range objs.Pods {
		if p.Namespace != cm.Namespace || p.Labels[labelApp] != h.Service || p.Labels[labelTier] != tierRouter || p.DeletionTimestamp != nil {
			continue
		}
		ps := PodState{Name: p.Name, Ready: podReady(p), Report: reports[p.Name]}
		ps.Current = ps.Report != nil && ps.Report.ResourceVersion == cm.ResourceVersion
		if ps.Current {
			h.HAProxy.OnCurrentSpec++
		}
		h.HAProxy.Pods = append(h.HAProxy.Pods, ps)
	}
	sort.Slice(h.HAProxy.Pods, func(i, j int) bool { return h.HAProxy.Pods[i].Name < h.HAProxy.Pods[j].Name })
	for _, ps := range h.HAProxy.Pods {
		r := ps.Report
		switch {
		case r == nil:
			h.problem("HAProxy pod %s has not reported what it runs", ps.Name)
		case r.Rejected != nil && r.Rejected.ResourceVersion == cm.ResourceVersion && h.SpecError == "":
			h.problem("HAProxy pod %s rejected the spec: %s", ps.Name, firstLine(r.Rejected.Message))
		case r.Unreadable != nil:
			h.problem("HAProxy pod %s cannot read its spec since %s (it keeps the last good config): %s", ps.Name, r.Unreadable.Since.UTC().Format(time.RFC3339), firstLine(r.Unreadable.Message))
		case r.HAProxy != "running":
			h.problem("HAProxy pod %s: HAProxy %s since %s", ps.Name, r.HAProxy, r.Since.Format(time.RFC3339))
		case !ps.Current && h.SpecError == "":
			// An invalid spec keeps every pod on the last valid one: said above.
			h.problem("HAProxy pod %s runs an older spec: resourceVersion %s (its report since %s); the current one is %s", ps.Name, orNone(r.ResourceVersion), r.Since.Format(time.RFC3339), cm.ResourceVersion)
		}
	}

}

// judgeTracks judges the track Deployments, leftovers of old versions, and
// the ready endpoints of each track Service.
func (h *Health) judgeTracks(cm *corev1.ConfigMap, objs Objects, spec *weights.Spec, opt Options) {
	wanted := make(map[string]bool)
	if spec != nil {
		for _, name := range spec.TrackNames() {
			t := spec.Tracks[name]
			th := TrackHealth{Name: name, Version: t.Version, Deployments: []DeploymentState{}}
			if !t.Autoscaled {
				n := int32(t.Replicas)
				th.Replicas = &n
			}
			th.MinEndpoints = opt.MinEndpoints
			if !t.Autoscaled && t.Replicas < th.MinEndpoints {
				th.MinEndpoints = t.Replicas
			}
			th.ReadyEndpoints = readyEndpoints(objs.EndpointSlices, cm.Namespace, spec.ServiceName(name))
			wanted[spec.DeploymentName(name)] = true
			h.Tracks = append(h.Tracks, th)
		}
	}
	for _, d := range objs.Deployments {
		if d.Namespace != cm.Namespace || d.Labels[labelApp] != h.Service || d.Labels[labelTier] != tierService {
			continue
		}
		ds := DeploymentState{Name: d.Name, Track: d.Labels[labelTrack], Version: d.Labels[labelVersion], Replicas: replicas(d), Ready: d.Status.ReadyReplicas}
		placed := false
		for i := range h.Tracks {
			if h.Tracks[i].Name == ds.Track {
				h.Tracks[i].Deployments = append(h.Tracks[i].Deployments, ds)
				placed = wanted[d.Name]
				if placed && h.Tracks[i].Replicas != nil && ds.Replicas > *h.Tracks[i].Replicas {
					h.problem("%s: Deployment %s has %d replicas, the spec says %d", ds.Track, ds.Name, ds.Replicas, *h.Tracks[i].Replicas)
				}
			}
		}
		if !placed && spec != nil {
			h.Leftovers = append(h.Leftovers, ds)
		}
	}
	sort.Slice(h.Leftovers, func(i, j int) bool { return h.Leftovers[i].Name < h.Leftovers[j].Name })
	for _, d := range h.Leftovers {
		if d.Replicas > 0 || d.Ready > 0 {
			h.problem("leftover Deployment %s (track %s, version %s, %d/%d ready): the spec does not run it", d.Name, orNone(d.Track), orNone(d.Version), d.Ready, d.Replicas)
		} else {
			h.problem("leftover Deployment %s (track %s, version %s, scaled to 0): the spec does not run it", d.Name, orNone(d.Track), orNone(d.Version))
		}
	}
	for i := range h.Tracks {
		th := &h.Tracks[i]
		sort.Slice(th.Deployments, func(a, b int) bool { return th.Deployments[a].Name < th.Deployments[b].Name })
		if th.ReadyEndpoints < th.MinEndpoints {
			h.problem("%s: %d ready endpoint%s, want at least %d", th.Name, th.ReadyEndpoints, plural(th.ReadyEndpoints), th.MinEndpoints)
		}
	}

}

// liveWeights lists the spec's weights beside the ones the pods report.
func (h *Health) liveWeights(spec *weights.Spec) {
	if spec != nil {
		for _, name := range spec.BackendNames() {
			b := spec.Backends[name]
			bh := BackendHealth{Name: name}
			for _, track := range b.Tracks() {
				sh := ServerHealth{Track: track, Weight: b[track], Share: b.Share(track), Live: map[int]int{}}
				for _, ps := range h.HAProxy.Pods {
					if ps.Report == nil || ps.Report.HAProxy != "running" {
						continue
					}
					if w, ok := ps.Report.Weights[name][track]; ok {
						sh.Live[w]++
					}
					if why := ps.Report.Down[name][track]; why != "" {
						if sh.Down == nil {
							sh.Down = map[string]int{}
						}
						sh.Down[why]++
					}
				}
				// Not a problem (yet): the test clusters' pods are kwok's,
				// which no HAProxy can reach; status shows it beside the
				// live weights, and trackrouter_server_up is there to alert on.
				bh.Servers = append(bh.Servers, sh)
			}
			h.Backends = append(h.Backends, bh)
		}
	}
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyEndpoints counts the ready endpoints of a Service, over its slices
// (an address in two slices counts once).
func readyEndpoints(slices []*discoveryv1.EndpointSlice, ns, service string) int {
	seen := make(map[string]bool)
	for _, s := range slices {
		if s.Namespace != ns || s.Labels[discoveryv1.LabelServiceName] != service {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready || len(e.Addresses) == 0 {
				continue
			}
			seen[e.Addresses[0]] = true
		}
	}
	return len(seen)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (and more)"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// release reads the service's release ConfigMap. A release rolled back or
// stopped is no problem of the service's health (the rollback worked): it
// shows in the release's own words.
func (h *Health) release(cm *corev1.ConfigMap, objs Objects, spec *weights.Spec) {
	if spec == nil {
		return
	}
	for _, st := range objs.Status {
		if st.Namespace != cm.Namespace || st.Name != pipeline.ConfigMapName(spec.Service) {
			continue
		}
		r, err := pipeline.Describe(st.Data, spec)
		if err != nil {
			h.problem("the release ConfigMap %s: %v", st.Name, err)
			return
		}
		h.Release = r
	}
}

// Word is the service's health in one word: "ok" or "FAILING"; a
// healthy service whose last release was rolled back or stopped within
// the hour (pipeline.Status.Alarm) is "ROLLEDBACK" or "STOPPED".
func (h *Health) Word() string {
	switch {
	case !h.Healthy:
		return "FAILING"
	case h.Release != nil && h.Release.Alarm(time.Now()):
		return strings.ToUpper(string(h.Release.Phase))
	}
	return "ok"
}

// Alarm reports whether status exits 1 for h: unhealthy, or its last
// release rolled back or stopped within the hour.
func (h *Health) Alarm(now time.Time) bool {
	return !h.Healthy || h.Release != nil && h.Release.Alarm(now)
}

// LiveWords says which weights the pods run: "5 on 4 pods", or "5 on 3
// pods, 10 on 1 pod" while they differ.
func LiveWords(live map[int]int) string {
	if len(live) == 0 {
		return "unknown (no report)"
	}
	ws := make([]int, 0, len(live))
	for w := range live {
		ws = append(ws, w)
	}
	sort.Ints(ws)
	parts := make([]string, len(ws))
	for i, w := range ws {
		s := "s"
		if live[w] == 1 {
			s = ""
		}
		parts[i] = fmt.Sprintf("%d on %d pod%s", w, live[w], s)
	}
	return strings.Join(parts, ", ")
}
