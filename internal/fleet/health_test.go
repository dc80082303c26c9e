package fleet

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const spec = "service: web\nport: 80\nrouter: {replicas: 2}\ntracks:\n  production: {version: \"1\", replicas: 1}\ndefault: main\nbackends:\n  main: {production: 100}\n"

func objects(status map[string]string, withStatus bool) Objects {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", ResourceVersion: "7", Labels: map[string]string{"trackrouter.dev/service": "web"}},
		Data: map[string]string{"service.yaml": spec}}
	objs := Objects{Specs: []*corev1.ConfigMap{cm},
		Deployments: []*appsv1.Deployment{{ObjectMeta: metav1.ObjectMeta{Name: "web-haproxy", Namespace: "ns"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)}, Status: appsv1.DeploymentStatus{ReadyReplicas: 2}}}}
	for _, p := range []string{"web-haproxy-a", "web-haproxy-b"} {
		objs.Pods = append(objs.Pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p, Namespace: "ns", Labels: map[string]string{"app": "web", "tier": "router"}}})
	}
	if withStatus {
		objs.Status = []*corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "web-haproxy-status", Namespace: "ns"}, Data: status}}
	}
	return objs
}

func report(pod string) string {
	b, _ := json.Marshal(Report{Pod: pod, ResourceVersion: "7", HAProxy: "running", InSync: true, Since: time.Now()})
	return string(b)
}

// TestGarbageHidesNoReport: one unreadable value in the status ConfigMap
// is named, and the other pods' reports still count.
func TestGarbageHidesNoReport(t *testing.T) {
	h := Evaluate(objects(map[string]string{"web-haproxy-a": report("web-haproxy-a"), "web-haproxy-b": report("web-haproxy-b"), "ghost": "oops"}, true), Options{MinEndpoints: 0})[0]
	if h.HAProxy.OnCurrentSpec != 2 {
		t.Errorf("on the current spec: %d, want 2", h.HAProxy.OnCurrentSpec)
	}
	if len(h.Problems) != 2 || !strings.Contains(h.Problems[0], "unreadable report under the key ghost") {
		t.Errorf("problems: %q", h.Problems)
	}
	// No status ConfigMap at all: said once, not as every pod's fault.
	h = Evaluate(objects(nil, false), Options{MinEndpoints: 0})[0]
	if !strings.Contains(strings.Join(h.Problems, "\n"), "no status ConfigMap web-haproxy-status") {
		t.Errorf("problems without a status ConfigMap: %q", h.Problems)
	}
}

// TestUnreadableSpecIsAProblem: a pod whose sidecar cannot read its spec
// says so, with since when and why.
func TestUnreadableSpecIsAProblem(t *testing.T) {
	since := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	b, _ := json.Marshal(Report{Pod: "web-haproxy-b", ResourceVersion: "7", HAProxy: "running", InSync: true, Since: since,
		Unreadable: &Unreadable{Message: "read spec: open /spec/service.yaml: too many levels of symbolic links", Since: since}})
	h := Evaluate(objects(map[string]string{"web-haproxy-a": report("web-haproxy-a"), "web-haproxy-b": string(b)}, true), Options{MinEndpoints: 0})[0]
	want := "HAProxy pod web-haproxy-b cannot read its spec since 2026-12-03T10:00:00Z (it keeps the last good config): read spec: open /spec/service.yaml: too many levels of symbolic links"
	if got := strings.Join(h.Problems, "\n"); !strings.Contains(got, want) {
		t.Errorf("problems: want %q, got %q", want, got)
	}
}

// TestServerDownCounted: a server HAProxy sends no traffic to (its checks
// fail) is counted beside its live weights, by why and on how many pods.
func TestServerDownCounted(t *testing.T) {
	b, _ := json.Marshal(Report{Pod: "web-haproxy-b", ResourceVersion: "7", HAProxy: "running", InSync: true, Since: time.Now(),
		Weights: map[string]map[string]int{"main": {"production": 100}}, Down: map[string]map[string]string{"main": {"production": "down"}}})
	h := Evaluate(objects(map[string]string{"web-haproxy-a": report("web-haproxy-a"), "web-haproxy-b": string(b)}, true), Options{MinEndpoints: 0})[0]
	if got := h.Backends[0].Servers[0].Down; len(got) != 1 || got["down"] != 1 {
		t.Errorf("backend main's production down on %v pods, want down on 1", got)
	}
}
