package trackctl

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/trackrouter/trackrouter/examples"
	"github.com/trackrouter/trackrouter/internal/fleet"
)

// statusObjects is a cluster with two services: web, healthy, and
// account-service, with one HAProxy pod on an older spec (weights 5/95
// live there, 10/90 elsewhere), a canary down to 1 ready endpoint and a
// leftover old canary.
func statusObjects(t *testing.T) []runtime.Object {
	t.Helper()
	since := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var objs []runtime.Object
	cm, _, err := examples.AccountServiceObjects("shop")
	if err != nil {
		t.Fatal(err)
	}
	cm.ResourceVersion = "200"
	cm.Data["service.yaml"] = strings.Replace(cm.Data["service.yaml"], "{canary: 5, production: 95}", "{canary: 10, production: 90}", 1)
	web := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "300",
		Labels: map[string]string{"trackrouter.dev/service": "web"}},
		Data: map[string]string{"service.yaml": "service: web\nport: 80\nrouter: {replicas: 2}\ntracks:\n  production: {version: \"2026.11.1\"}\ndefault: main\nbackends:\n  main: {production: 100}\n"}}
	objs = append(objs, cm, web)
	dep := func(svc, name, tier, track, version string, replicas, ready int32) {
		l := map[string]string{"app": svc, "tier": tier, "app.kubernetes.io/managed-by": "track-controller"}
		if track != "" {
			l["track"], l["version"] = track, version
		}
		objs = append(objs, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: l},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas)}, Status: appsv1.DeploymentStatus{ReadyReplicas: ready}})
	}
	slice := func(service string, ready int) {
		// The labels a track Service's slices carry (copied from it).
		app := strings.SplitN(service, "-", 2)[0]
		if strings.HasPrefix(service, "account-service") {
			app = "account-service"
		}
		s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: service + "-x", Namespace: "shop",
			Labels: map[string]string{discoveryv1.LabelServiceName: service, "app": app, "tier": "service"}}}
		for i := 0; i < ready; i++ {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.0.0." + string(rune('1'+i))}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
		objs = append(objs, s)
	}
	for _, x := range []struct {
		track, version string
		n, ready       int32
	}{{"internal", "1.0.0", 2, 2}, {"canary", "1.0", 4, 1}, {"paid", "0.2.3", 4, 4}, {"production", "0.2.3", 10, 10}} {
		dep("account-service", "account-service-"+x.track+"-"+x.version, "service", x.track, x.version, x.n, x.ready)
		slice("account-service-"+x.track, min(int(x.ready), 9))
	}
	dep("account-service", "account-service-canary-0.2.1", "service", "canary", "0.2.1", 2, 2)
	dep("account-service", "account-service-haproxy", "router", "", "", 4, 4)
	dep("web", "web-production-2026.11.1", "service", "production", "2026.11.1", 2, 2)
	slice("web-production", 2)
	dep("web", "web-haproxy", "router", "", "", 2, 2)

	status := func(svc string, reports map[string]fleet.Report) {
		data := map[string]string{}
		for pod, r := range reports {
			r.Pod = pod
			b, _ := json.Marshal(r)
			data[pod] = string(b)
		}
		objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: svc + "-haproxy-status", Namespace: "shop",
			Labels: map[string]string{"app": svc, "tier": "router", "app.kubernetes.io/managed-by": "track-controller"}}, Data: data})
	}
	live := func(canary, production int) map[string]map[string]int {
		return map[string]map[string]int{"canary": {"canary": canary, "production": production}, "enterprise": {"production": 100},
			"internal": {"internal": 100}, "paid": {"paid": 5, "production": 95}}
	}
	reports := map[string]fleet.Report{}
	for i, pod := range []string{"account-service-haproxy-a", "account-service-haproxy-b", "account-service-haproxy-c", "account-service-haproxy-d"} {
		r := fleet.Report{ResourceVersion: "200", Stamp: "trackrouter:abc", InSync: true, HAProxy: "running", Since: since, Weights: live(10, 90)}
		if i == 3 {
			r.ResourceVersion, r.Weights, r.Since = "150", live(5, 95), since.Add(-time.Hour)
		}
		if i == 1 { // its checks of the canary fail: shown beside the live weights
			r.Down = map[string]map[string]string{"canary": {"canary": "down"}}
		}
		reports[pod] = r
		objs = append(objs, routerPod("account-service", pod))
	}
	status("account-service", reports)
	webReports := map[string]fleet.Report{}
	for _, pod := range []string{"web-haproxy-a", "web-haproxy-b"} {
		webReports[pod] = fleet.Report{ResourceVersion: "300", Stamp: "trackrouter:def", InSync: true, HAProxy: "running", Since: since,
			Weights: map[string]map[string]int{"main": {"production": 100}}}
		objs = append(objs, routerPod("web", pod))
	}
	status("web", webReports)
	return objs
}

func routerPod(svc, name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": svc, "tier": "router"}},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
}

// TestStatusGolden: the table, the wide view and the JSON, from a fake
// cluster, equal their golden files (go test ./internal/trackctl -run
// TestStatusGolden -update rewrites them); the exit code is 1 since one
// service fails, 0 for the healthy one alone.
func TestStatusGolden(t *testing.T) {
	client := fake.NewClientset(statusObjects(t)...)
	for _, tc := range []struct {
		name     string
		o        statusOptions
		services []string
		code     int
	}{
		{"table", statusOptions{output: "table"}, nil, ExitProblem},
		{"table-all-namespaces", statusOptions{output: "table", kube: kubeFlags{allNamespaces: true}}, nil, ExitProblem},
		{"wide", statusOptions{output: "wide"}, nil, ExitProblem},
		{"json", statusOptions{output: "json"}, nil, ExitProblem},
		{"one-healthy", statusOptions{output: "table"}, []string{"web"}, ExitOK},
	} {
		var out bytes.Buffer
		e := &env{name: "trackctl", stdout: &out, stderr: &out}
		o := tc.o
		o.client, o.minEndpoints = client, 2
		if !o.kube.allNamespaces {
			o.kube.namespace = "shop"
		}
		code := ExitOK
		if err := e.runStatus(context.Background(), &o, tc.services); err == errProblems {
			code = ExitProblem
		} else if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d", tc.name, code, tc.code)
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if n := len([]rune(line)); n > tableWidth && tc.name != "json" {
				t.Errorf("%s: a line of %d characters, more than %d: %q", tc.name, n, tableWidth, line)
			}
		}
		file := filepath.Join("../testdata/trackctl/status", tc.name+".txt")
		if *update {
			writeFile(t, file, out.String())
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (-update writes it)", err)
		}
		if diff := cmp.Diff(string(want), out.String()); diff != "" {
			t.Errorf("%s (-golden +got):\n%s", tc.name, diff)
		}
	}
}

// TestStatusNamesMissingServices: a named service without a spec fails
// the run, even when another named one is healthy.
func TestStatusNamesMissingServices(t *testing.T) {
	client := fake.NewClientset(statusObjects(t)...)
	var out, errOut bytes.Buffer
	e := &env{name: "trackctl", stdout: &out, stderr: &errOut}
	o := &statusOptions{output: "table", client: client, minEndpoints: 2, kube: kubeFlags{namespace: "shop"}}
	if err := e.runStatus(context.Background(), o, []string{"web", "nosuch"}); err != errProblems || !strings.Contains(errOut.String(), "no spec for nosuch in namespace shop") {
		t.Errorf("err %v, stderr %q", err, errOut.String())
	}
}

// TestStatusCutOnlyOnTerminal: a row wider than the table is cut (with …)
// on a terminal only; piped or redirected, every cell is kept.
func TestStatusCutOnlyOnTerminal(t *testing.T) {
	h := &fleet.Health{Namespace: "a-long-namespace-name", Service: "a-service-with-a-long-name", Healthy: true}
	for _, tr := range []string{"internal", "canary", "paid", "production"} {
		h.Tracks = append(h.Tracks, fleet.TrackHealth{Name: tr, Version: "2026.12.06-build.1234567", ReadyEndpoints: 12})
	}
	for _, clip := range []bool{true, false} {
		var b bytes.Buffer
		printTable(&b, []*fleet.Health{h}, true, false, clip)
		row := strings.Split(b.String(), "\n")[1]
		if cut := strings.HasSuffix(row, "…"); cut != clip || !clip && !strings.HasSuffix(row, "production 2026.12.06-build.1234567 12") {
			t.Errorf("clip %v: %q", clip, row)
		}
	}
}
