package fleet

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// healthyFleet is one service as it runs when all is well: its spec, its
// HAProxy tier of two pods that report the current spec, and its one
// track with two ready endpoints.
func healthyFleet() Objects {
	since := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	report := func(pod string) string {
		b, _ := json.Marshal(Report{Pod: pod, ResourceVersion: "7", HAProxy: "running", InSync: true, Since: since,
			Weights: map[string]map[string]int{"main": {"production": 100}}})
		return string(b)
	}
	objs := objects(map[string]string{"web-haproxy-a": report("web-haproxy-a"), "web-haproxy-b": report("web-haproxy-b")}, true)
	objs.Status[0].Labels = map[string]string{"app": "web"}
	for _, p := range objs.Pods {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	objs.Deployments = append(objs.Deployments, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-production-1", Namespace: "ns", Labels: map[string]string{"app": "web", "tier": "service", "track": "production", "version": "1"}},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)}, Status: appsv1.DeploymentStatus{ReadyReplicas: 1}})
	objs.EndpointSlices = []*discoveryv1.EndpointSlice{{
		ObjectMeta: metav1.ObjectMeta{Name: "web-production-x", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "web-production"}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}}}
	return objs
}

// TestEvaluateProblems: one case per problem Evaluate reports, each made
// from the healthy fleet by one change, and the healthy fleet itself.
func TestEvaluateProblems(t *testing.T) {
	report := func(objs Objects, pod string, edit func(*Report)) {
		var r Report
		json.Unmarshal([]byte(objs.Status[0].Data[pod]), &r)
		edit(&r)
		b, _ := json.Marshal(r)
		objs.Status[0].Data[pod] = string(b)
	}
	for _, tc := range []struct {
		name   string
		change func(objs *Objects)
		want   []string
	}{
		{"healthy", func(*Objects) {}, []string{}},
		{"invalid spec", func(o *Objects) { o.Specs[0].Data["service.yaml"] += "extra: 1\n" },
			[]string{"invalid spec: configmap/ns/web:9: extra: unknown field (known: service, port, header, template, router, tracks, groups, default, backends, affinity, trustedSources)"}},
		{"no service.yaml key", func(o *Objects) { delete(o.Specs[0].Data, "service.yaml") },
			[]string{"invalid spec: no key service.yaml"}},
		{"label names another service", func(o *Objects) { o.Specs[0].Labels["trackrouter.dev/service"] = "other" },
			[]string{"invalid spec: label trackrouter.dev/service=other does not match service \"web\""}},
		{"HAProxy pods not ready", func(o *Objects) { o.Deployments[0].Status.ReadyReplicas = 1 },
			[]string{"HAProxy tier: 1 of 2 pods ready"}},
		{"garbage in the status ConfigMap", func(o *Objects) { o.Status[0].Data["ghost"] = "oops" },
			[]string{"the status ConfigMap web-haproxy-status holds an unreadable report under the key ghost (written by hand?)"}},
		{"no status ConfigMap", func(o *Objects) { o.Status = nil },
			[]string{"no status ConfigMap web-haproxy-status labelled by track-controller: the HAProxy pods' reports cannot be read (is the controller running?)",
				"HAProxy pod web-haproxy-a has not reported what it runs", "HAProxy pod web-haproxy-b has not reported what it runs"}},
		{"a pod without a report", func(o *Objects) { delete(o.Status[0].Data, "web-haproxy-b") },
			[]string{"HAProxy pod web-haproxy-b has not reported what it runs"}},
		{"a pod rejected the spec", func(o *Objects) {
			report(*o, "web-haproxy-a", func(r *Report) {
				r.Rejected = &Rejection{ResourceVersion: "7", Message: "service.yaml:3: port: want an integer\nmore"}
			})
		}, []string{"HAProxy pod web-haproxy-a rejected the spec: service.yaml:3: port: want an integer (and more)"}},
		{"a pod cannot read its spec", func(o *Objects) {
			report(*o, "web-haproxy-a", func(r *Report) {
				r.Unreadable = &Unreadable{Message: "read spec: is a directory", Since: time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)}
			})
		}, []string{"HAProxy pod web-haproxy-a cannot read its spec since 2026-12-03T11:00:00Z (it keeps the last good config): read spec: is a directory"}},
		{"HAProxy unreachable", func(o *Objects) { report(*o, "web-haproxy-b", func(r *Report) { r.HAProxy = "unreachable" }) },
			[]string{"HAProxy pod web-haproxy-b: HAProxy unreachable since 2026-12-03T10:00:00Z"}},
		{"a pod on an older spec", func(o *Objects) { report(*o, "web-haproxy-b", func(r *Report) { r.ResourceVersion = "6" }) },
			[]string{"HAProxy pod web-haproxy-b runs an older spec: resourceVersion 6 (its report since 2026-12-03T10:00:00Z); the current one is 7"}},
		{"more replicas than the spec", func(o *Objects) { o.Deployments[1].Spec.Replicas = ptr.To[int32](3) },
			[]string{"production: Deployment web-production-1 has 3 replicas, the spec says 1"}},
		{"a leftover version running", func(o *Objects) {
			old := o.Deployments[1].DeepCopy()
			old.Name, old.Labels["version"] = "web-production-0", "0"
			o.Deployments = append(o.Deployments, old)
		}, []string{"leftover Deployment web-production-0 (track production, version 0, 1/1 ready): the spec does not run it"}},
		{"a leftover scaled to 0", func(o *Objects) {
			old := o.Deployments[1].DeepCopy()
			old.Name, old.Labels["version"], old.Spec.Replicas, old.Status.ReadyReplicas = "web-production-0", "0", ptr.To[int32](0), 0
			o.Deployments = append(o.Deployments, old)
		}, []string{"leftover Deployment web-production-0 (track production, version 0, scaled to 0): the spec does not run it"}},
		{"too few ready endpoints", func(o *Objects) { o.EndpointSlices[0].Endpoints[0].Conditions.Ready = ptr.To(false) },
			[]string{"production: 0 ready endpoints, want at least 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := healthyFleet()
			tc.change(&objs)
			h := Evaluate(objs, Options{MinEndpoints: 2})[0]
			if diff := cmp.Diff(tc.want, h.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if h.Healthy != (len(tc.want) == 0) {
				t.Errorf("healthy %v with problems %q", h.Healthy, h.Problems)
			}
		})
	}
}

// TestEvaluateLiveWeights: the weights each pod reports are counted by
// value, per backend and track.
func TestEvaluateLiveWeights(t *testing.T) {
	objs := healthyFleet()
	var r Report
	json.Unmarshal([]byte(objs.Status[0].Data["web-haproxy-b"]), &r)
	r.Weights["main"]["production"] = 50
	b, _ := json.Marshal(r)
	objs.Status[0].Data["web-haproxy-b"] = string(b)
	h := Evaluate(objs, Options{})[0]
	if got := h.Backends[0].Servers[0].Live; !cmp.Equal(got, map[int]int{100: 1, 50: 1}) || !strings.Contains(h.Backends[0].Name, "main") {
		t.Errorf("live weights: %v", h.Backends)
	}
}
