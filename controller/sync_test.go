package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/trackrouter/trackrouter/controller/releases"
	"github.com/trackrouter/trackrouter/examples"
	"github.com/trackrouter/trackrouter/weights"
)

// Fast tests of every branch of the sync on client-go's fake clientset
// (which applies with managed fields like the API server), asserting the
// exact write requests. The real-cluster tests stay the proof that garbage
// collection, EndpointSlices and leader election work.

type rig struct {
	t      *testing.T
	client *fake.Clientset
	ctrl   *Controller
	cm     *corev1.ConfigMap
	// refused: applies the resourceVersion precondition refused, which
	// wrote nothing ("services: apply NAME").
	refused []string
}

// exampleObjects reads the ConfigMap and PodTemplate of examples/account-service.yaml.
func exampleObjects(t *testing.T) (*corev1.ConfigMap, *corev1.PodTemplate) {
	t.Helper()
	cm, tmpl, err := examples.AccountServiceObjects("shop")
	if err != nil {
		t.Fatal(err)
	}
	cm.UID = "cm-uid"
	return cm, tmpl
}

func newRig(t *testing.T, objects ...runtime.Object) *rig {
	t.Helper()
	cm, tmpl := exampleObjects(t)
	client := fake.NewClientset(append([]runtime.Object{cm, tmpl}, objects...)...)
	r := &rig{t: t, client: client, cm: cm}
	client.PrependReactor("patch", "*", r.applyPrecondition)
	f := NewFactories(client, "shop", 0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctrl := New(client, f.Informers(), Options{RouterImage: "trackrouter:test", Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); f.Shutdown(); ctrl.events.Shutdown() })
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), ctrl.synced...) {
		t.Fatal("caches did not sync")
	}
	r.ctrl = ctrl
	return r
}

// applyPrecondition does what the API server does and the fake does not: an
// apply that carries a resourceVersion fails with a Conflict when an object
// of that name exists with another one.
func (r *rig) applyPrecondition(a k8stesting.Action) (bool, runtime.Object, error) {
	p := a.(k8stesting.PatchAction)
	if p.GetPatchType() != "application/apply-patch+yaml" {
		return false, nil, nil
	}
	var body struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(p.GetPatch(), &body); err != nil || body.Metadata.ResourceVersion == "" {
		return false, nil, nil
	}
	live, err := r.client.Tracker().Get(p.GetResource(), p.GetNamespace(), p.GetName())
	if err != nil {
		return false, nil, nil // none: the apply creates it
	}
	if live.(metav1.Object).GetResourceVersion() == body.Metadata.ResourceVersion {
		return false, nil, nil
	}
	r.refused = append(r.refused, p.GetResource().Resource+": apply "+p.GetName())
	return true, nil, apierrors.NewConflict(p.GetResource().GroupResource(), p.GetName(), errors.New("the object has been modified"))
}

// sync runs one sync of the spec once the caches hold what the fake API
// server holds, and returns the write requests it sent.
func (r *rig) sync() []string {
	r.t.Helper()
	got, err := r.syncKey(r.cm.Name)
	if err != nil {
		r.t.Fatalf("sync: %v", err)
	}
	return got
}

// syncKey syncs the spec ConfigMap name and returns the writes and the error.
func (r *rig) syncKey(name string) ([]string, error) {
	r.t.Helper()
	r.settle()
	r.client.ClearActions()
	r.refused = nil
	err := r.ctrl.syncHandler(context.Background(), cache.ObjectName{Namespace: "shop", Name: name})
	var out []string
	for _, a := range r.client.Actions() {
		if a.GetResource().Resource == "events" {
			continue
		}
		var name string
		switch a := a.(type) {
		case k8stesting.PatchAction:
			if a.GetPatchType() != "application/apply-patch+yaml" {
				r.t.Errorf("a patch that is not an apply: %s", a.GetPatchType())
			}
			name = "apply " + a.GetName()
		case k8stesting.DeleteAction:
			if p := a.GetDeleteOptions().Preconditions; p == nil || p.UID == nil || p.ResourceVersion == nil {
				r.t.Errorf("delete %s without UID and resourceVersion preconditions", a.GetName())
			}
			name = "delete " + a.GetName()
		case k8stesting.UpdateAction:
			name = "update " + a.GetObject().(metav1.Object).GetName()
		case k8stesting.CreateAction:
			name = "create " + a.GetObject().(metav1.Object).GetName()
		default:
			continue // get, list, watch
		}
		out = append(out, a.GetResource().Resource+": "+name)
	}
	for _, x := range r.refused {
		if i := slices.Index(out, x); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
	}
	return out, err
}

// settle waits until every informer holds the fake API server's objects.
func (r *rig) settle() {
	r.t.Helper()
	lists := []struct {
		resource string
		cached   func() (int, error)
	}{
		{"deployments", func() (int, error) { l, err := r.ctrl.deployments.List(everything); return len(l), err }},
		{"services", func() (int, error) { l, err := r.ctrl.services.List(everything); return len(l), err }},
		{"serviceaccounts", func() (int, error) { l, err := r.ctrl.accounts.List(everything); return len(l), err }},
		{"roles", func() (int, error) { l, err := r.ctrl.roles.List(everything); return len(l), err }},
		{"rolebindings", func() (int, error) { l, err := r.ctrl.roleBindings.List(everything); return len(l), err }},
	}
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, l := range lists {
			objs, err := r.client.Tracker().List(gvr(l.resource), gvk(l.resource), "shop")
			if err != nil {
				return false, err
			}
			items, _ := meta(objs)
			n, _ := l.cached()
			if n != items {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		r.t.Fatalf("informers did not catch up: %v", err)
	}
}

func (r *rig) editSpec(from, to string) {
	r.t.Helper()
	cm, err := r.client.CoreV1().ConfigMaps("shop").Get(context.Background(), r.cm.Name, metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	if !strings.Contains(cm.Data[weights.DataKey], from) {
		r.t.Fatalf("spec has no %q", from)
	}
	cm.Data[weights.DataKey] = strings.Replace(cm.Data[weights.DataKey], from, to, 1)
	if _, err := r.client.CoreV1().ConfigMaps("shop").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		r.t.Fatal(err)
	}
	wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		got, err := r.ctrl.configMaps.ConfigMaps("shop").Get(r.cm.Name)
		return err == nil && got.Data[weights.DataKey] == cm.Data[weights.DataKey], nil
	})
}

// event waits for an Event of reason whose message contains text.
func (r *rig) event(reason, text string) {
	r.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := r.client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Message, text) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		r.t.Errorf("no %s Event containing %q", reason, text)
	}
}

// created is what the first sync of the example writes, in order.
var created = []string{
	"services: apply account-service-canary", "services: apply account-service-internal",
	"services: apply account-service-paid", "services: apply account-service-production",
	"services: apply account-service",
	"serviceaccounts: apply account-service-haproxy", "roles: apply account-service-haproxy",
	"rolebindings: apply account-service-haproxy", "configmaps: apply account-service-haproxy-status",
	"deployments: apply account-service-canary-1.0", "deployments: apply account-service-internal-1.0.0",
	"deployments: apply account-service-paid-0.2.3", "deployments: apply account-service-production-0.2.3",
	"deployments: apply account-service-haproxy",
}

func TestSyncCreatesThenWritesNothing(t *testing.T) {
	r := newRig(t)
	if diff := cmp.Diff(created, r.sync()); diff != "" {
		t.Errorf("first sync (-want +got):\n%s", diff)
	}
	if got := r.sync(); len(got) != 0 {
		t.Errorf("a sync with nothing to do wrote: %v", got)
	}
}

func TestSyncRepairsDrift(t *testing.T) {
	r := newRig(t)
	r.sync()
	ctx := context.Background()
	deps := r.client.AppsV1().Deployments("shop")
	// Replicas and labels changed by another field manager: taken back by the apply.
	d, _ := deps.Get(ctx, "account-service-paid-0.2.3", metav1.GetOptions{})
	d.Spec.Replicas = ptr.To[int32](9)
	d.Labels["tier"] = "other"
	if _, err := deps.Update(ctx, d, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	// The pod template edited by hand: replaced.
	d, _ = deps.Get(ctx, "account-service-canary-1.0", metav1.GetOptions{})
	d.Spec.Template.Spec.Containers[0].Env = append(d.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "HACK", Value: "1"})
	if _, err := deps.Update(ctx, d, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	// A Service's selector changed, and a Role deleted.
	s, _ := r.client.CoreV1().Services("shop").Get(ctx, "account-service", metav1.GetOptions{})
	s.Spec.Selector = map[string]string{"app": "x"}
	if _, err := r.client.CoreV1().Services("shop").Update(ctx, s, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if err := r.client.RbacV1().Roles("shop").Delete(ctx, "account-service-haproxy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"services: apply account-service",
		"roles: apply account-service-haproxy",
		"deployments: update account-service-canary-1.0",
		"deployments: apply account-service-paid-0.2.3",
	}
	if diff := cmp.Diff(want, r.sync()); diff != "" {
		t.Errorf("repair (-want +got):\n%s", diff)
	}
	d, _ = deps.Get(ctx, "account-service-paid-0.2.3", metav1.GetOptions{})
	if *d.Spec.Replicas != 4 || d.Labels["tier"] != "service" {
		t.Errorf("paid not repaired: replicas %d, labels %v", *d.Spec.Replicas, d.Labels)
	}
	d, _ = deps.Get(ctx, "account-service-canary-1.0", metav1.GetOptions{})
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "HACK" {
			t.Errorf("canary's env not repaired: %v", d.Spec.Template.Spec.Containers[0].Env)
		}
	}
	// The template replace leaves the canary to be re-owned by an apply once.
	r.sync()
	if got := r.sync(); len(got) != 0 {
		t.Errorf("writes after the repair: %v", got)
	}
}

func TestSyncLeavesForeignObjects(t *testing.T) {
	foreign := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "account-service-internal", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9999}}}}
	r := newRig(t, foreign)
	got := r.sync()
	if slices.Contains(got, "services: apply account-service-internal") {
		t.Errorf("a Service the spec does not own was written: %v", got)
	}
	if len(got) != len(created)-1 {
		t.Errorf("want every other object created, got %v", got)
	}
	r.event("NotOwned", "Service shop/account-service-internal exists and is not owned by this spec")
}

func TestSyncRefusesWithoutWriting(t *testing.T) {
	tests := []struct {
		name       string
		from, to   string
		noTemplate bool
		reason     string
		text       string
	}{
		{name: "invalid spec", from: "{canary: 5,", to: "{canary: 300,", reason: "InvalidSpec", text: "weight 300 is out of range 0-256"},
		{name: "label does not match", from: "service: account-service", to: "service: acct2", reason: "InvalidSpec", text: `does not match service "acct2"`},
		{name: "template missing", noTemplate: true, reason: "TemplateNotFound", text: "PodTemplate shop/account-service not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			if tc.noTemplate {
				if err := r.client.CoreV1().PodTemplates("shop").Delete(context.Background(), "account-service", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
					_, err := r.ctrl.templates.PodTemplates("shop").Get("account-service")
					return err != nil, nil
				})
			} else {
				r.editSpec(tc.from, tc.to)
			}
			if got := r.sync(); len(got) != 0 {
				t.Errorf("a refused spec wrote: %v", got)
			}
			r.event(tc.reason, tc.text)
		})
	}
}

// TestSyncBlueGreen bumps canary's version: the new Deployment is applied,
// the old one stays until the new one is Available, then goes.
func TestSyncBlueGreen(t *testing.T) {
	r := newRig(t)
	r.sync()
	r.editSpec("canary:     {version: 1.0", "canary:     {version: 1.0.0")
	// The HAProxy tier names no version: only the new canary is written.
	if diff := cmp.Diff([]string{"deployments: apply account-service-canary-1.0.0"}, r.sync()); diff != "" {
		t.Errorf("version bump (-want +got):\n%s", diff)
	}
	if got := r.sync(); len(got) != 0 {
		t.Errorf("the old version went before the new one is Available: %v", got)
	}
	ctx := context.Background()
	d, _ := r.client.AppsV1().Deployments("shop").Get(ctx, "account-service-canary-1.0.0", metav1.GetOptions{})
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, UpdatedReplicas: 4, AvailableReplicas: 4, Replicas: 4,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}}
	if _, err := r.client.AppsV1().Deployments("shop").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		got, err := r.ctrl.deployments.Deployments("shop").Get("account-service-canary-1.0.0")
		return err == nil && releases.Available(got), nil
	})
	if diff := cmp.Diff([]string{"deployments: delete account-service-canary-1.0"}, r.sync()); diff != "" {
		t.Errorf("after the new version is Available (-want +got):\n%s", diff)
	}
}

// TestSyncCleanup removes a track from the spec: its Deployment and
// Service go.
func TestSyncCleanup(t *testing.T) {
	r := newRig(t)
	r.sync()
	cm, _ := r.client.CoreV1().ConfigMaps("shop").Get(context.Background(), r.cm.Name, metav1.GetOptions{})
	spec := cm.Data[weights.DataKey]
	var kept []string
	for _, line := range strings.Split(spec, "\n") {
		if !strings.Contains(line, "internal") {
			kept = append(kept, line)
		}
	}
	r.editSpec(spec, strings.Join(kept, "\n"))
	got := r.sync()
	for _, w := range []string{"deployments: delete account-service-internal-1.0.0", "services: delete account-service-internal"} {
		if !slices.Contains(got, w) {
			t.Errorf("cleanup lacks %q: %v", w, got)
		}
	}
	for _, w := range got {
		if strings.HasPrefix(w, "deployments: delete") && !strings.Contains(w, "internal") || strings.HasPrefix(w, "services: delete") && !strings.Contains(w, "internal") {
			t.Errorf("cleanup deleted more than the removed track: %s", w)
		}
	}
}

func TestFieldDiff(t *testing.T) {
	got, err := fieldDiff(map[string]any{"spec": map[string]any{"replicas": 9, "strategy": map[string]any{}}, "metadata": map[string]any{"name": "a"}},
		map[string]any{"spec": map[string]any{"replicas": 4}, "metadata": map[string]any{"name": "a"}})
	if err != nil || got != "spec.replicas" {
		t.Errorf("fieldDiff: got %q, %v", got, err)
	}
	if got, _ := fieldDiff(map[string]any{"a": map[string]any{}}, map[string]any{}); got != "" {
		t.Errorf("empty objects must not count: %q", got)
	}
	deep := func(image string, extra bool) map[string]any {
		spec := map[string]any{"containers": []any{map[string]any{"image": image}}, "nodeSelector": map[string]any{"disk": "ssd"}}
		if extra {
			spec["affinity"] = map[string]any{"nodeAffinity": map[string]any{}}
		}
		return map[string]any{"spec": map[string]any{"template": map[string]any{"spec": spec}}}
	}
	if got, _ := fieldDiff(deep("a:1", false), deep("a:2", true)); got != "spec.template.spec.containers" {
		t.Errorf("a list is named whole, an empty nested object not at all: %q", got)
	}
	h, w := deep("a:1", false), deep("a:1", false)
	w["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["nodeSelector"] = map[string]any{"disk": "hdd"}
	if got, _ := fieldDiff(h, w); got != "spec.template.spec.nodeSelector" {
		t.Errorf("paths are cut at four levels: %q", got)
	}
}

var everything = labelsEverything()

func gvr(resource string) schema.GroupVersionResource {
	switch resource {
	case "deployments":
		return appsv1.SchemeGroupVersion.WithResource(resource)
	case "roles", "rolebindings":
		return rbacv1.SchemeGroupVersion.WithResource(resource)
	}
	return corev1.SchemeGroupVersion.WithResource(resource)
}

func gvk(resource string) schema.GroupVersionKind {
	kinds := map[string]string{"deployments": "Deployment", "services": "Service", "serviceaccounts": "ServiceAccount", "roles": "Role", "rolebindings": "RoleBinding"}
	return gvr(resource).GroupVersion().WithKind(kinds[resource])
}

// meta counts the items of a list the tracker returned that carry the
// managed-by label, as the informers see them.
func meta(list runtime.Object) (int, error) {
	items, err := apimeta.ExtractList(list)
	n := 0
	for _, it := range items {
		if o, ok := it.(metav1.Object); ok && o.GetLabels()[LabelManagedBy] == ManagedBy {
			n++
		}
	}
	return n, err
}

func labelsEverything() labels.Selector { return labels.Everything() }

// TestSyncFencedWhenNotLeading: a replica that may have lost the lease (it
// was paused past its lease) writes nothing, not even a delete.
func TestSyncFencedWhenNotLeading(t *testing.T) {
	r := newRig(t)
	r.ctrl.opt.Leading = func() bool { return false }
	r.settle()
	r.client.ClearActions()
	err := r.ctrl.syncHandler(context.Background(), cache.ObjectName{Namespace: "shop", Name: r.cm.Name})
	if !errors.Is(err, errNotLeading) {
		t.Errorf("want errNotLeading, got %v", err)
	}
	for _, a := range r.client.Actions() {
		if v := a.GetVerb(); v != "get" && v != "list" && v != "watch" && a.GetResource().Resource != "events" {
			t.Errorf("a fenced replica sent %s %s", v, a.GetResource().Resource)
		}
	}
}

// TestSyncDuplicateSpec: a second ConfigMap for a service is refused as a
// whole (it owns nothing), with a Warning Event on both; the older keeps it.
func TestSyncDuplicateSpec(t *testing.T) {
	cm, _ := exampleObjects(t)
	dup := cm.DeepCopy()
	dup.Name, dup.UID = "account-service-copy", "dup-uid"
	dup.CreationTimestamp = metav1.NewTime(time.Now())
	r := newRig(t, dup)
	got, err := r.syncKey(dup.Name)
	if err != nil || len(got) != 0 {
		t.Errorf("the duplicate spec wrote %v (err %v)", got, err)
	}
	r.event("DuplicateSpec", `service "account-service" is already defined in this namespace by ConfigMap account-service,`)
	r.event("NotOwned", "ConfigMap shop/account-service-copy also defines service")
	if diff := cmp.Diff(created, r.sync()); diff != "" {
		t.Errorf("the older spec (-want +got):\n%s", diff)
	}
}

// TestSyncApplyFailureDoesNotStopOthers: the API refusing one object gives
// a Warning Event and a count, and every other object is still written.
func TestSyncApplyFailureDoesNotStopOthers(t *testing.T) {
	r := newRig(t)
	r.client.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.PatchAction).GetName() == "account-service-paid-0.2.3" {
			return true, nil, fmt.Errorf("admission webhook denied the request: no")
		}
		return false, nil, nil
	})
	got, err := r.syncKey(r.cm.Name)
	if err == nil || !strings.Contains(err.Error(), "admission webhook denied") {
		t.Errorf("want the sync to fail with the API's reason, got %v", err)
	}
	if len(got) != len(created) {
		t.Errorf("want every object tried, got %v", got)
	}
	if n := r.ctrl.ApplyErrors.Load(); n != 1 {
		t.Errorf("ApplyErrors = %d, want 1", n)
	}
	r.event("ApplyFailed", "Deployment account-service-paid-0.2.3: admission webhook denied the request")
}

// TestSyncAutoscaledTrack: with replicas: auto the controller writes no
// replicas, and a scale by an autoscaler is never taken back.
func TestSyncAutoscaledTrack(t *testing.T) {
	// Someone else's Deployment, with the name of a version to come.
	foreign := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "account-service-canary-1.0.1", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)}}
	r := newRig(t, foreign)
	r.sync() // canary at 4 replicas, set by the controller
	r.editSpec("canary:     {version: 1.0, replicas: 4}", "canary:     {version: 1.0, replicas: auto}")
	r.sync()
	ctx := context.Background()
	deps := r.client.AppsV1().Deployments("shop")
	d, err := deps.Get(ctx, "account-service-canary-1.0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 4 {
		t.Fatalf("switching to replicas: auto changed replicas to %v; want them kept at 4 for the autoscaler", d.Spec.Replicas)
	}
	d.Spec.Replicas = ptr.To[int32](7)
	if _, err := deps.Update(ctx, d, metav1.UpdateOptions{FieldManager: "horizontal-pod-autoscaler"}); err != nil {
		t.Fatal(err)
	}
	if got := r.sync(); len(got) != 0 {
		t.Errorf("the controller wrote over an autoscaled track: %v", got)
	}
	d, _ = deps.Get(ctx, "account-service-canary-1.0", metav1.GetOptions{})
	if *d.Spec.Replicas != 7 {
		t.Errorf("replicas %d, want the autoscaler's 7", *d.Spec.Replicas)
	}
	// A new version starts with as many replicas as the track runs.
	r.editSpec("canary:     {version: 1.0, replicas: auto}", "canary:     {version: 1.0.0, replicas: auto}")
	r.sync()
	d, err = deps.Get(ctx, "account-service-canary-1.0.0", metav1.GetOptions{})
	if err != nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 7 {
		t.Errorf("the new version of an autoscaled track: %v, %v; want 7 replicas", d.Spec.Replicas, err)
	}
	r.event("AutoscaledSwitch", "point it at account-service-canary-1.0.0")

	// A new version whose name is someone else's Deployment: left alone,
	// its replicas too.
	r.editSpec("canary:     {version: 1.0.0, replicas: auto}", "canary:     {version: 1.0.1, replicas: auto}")
	r.sync()
	d, err = deps.Get(ctx, "account-service-canary-1.0.1", metav1.GetOptions{})
	if err != nil || *d.Spec.Replicas != 1 || len(d.OwnerReferences) != 0 {
		t.Errorf("someone else's Deployment: replicas %v, owners %v, %v; want 1 and none", d.Spec.Replicas, d.OwnerReferences, err)
	}
	r.event("NotOwned", "account-service-canary-1.0.1")
}

// TestSyncStuckSwitch: a new version that passed its progress deadline is
// reported (Warning Event, count) and the old one keeps serving.
func TestSyncStuckSwitch(t *testing.T) {
	r := newRig(t)
	r.sync()
	r.editSpec("canary:     {version: 1.0", "canary:     {version: 1.0.0")
	r.sync()
	ctx := context.Background()
	d, _ := r.client.AppsV1().Deployments("shop").Get(ctx, "account-service-canary-1.0.0", metav1.GetOptions{})
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Conditions: []appsv1.DeploymentCondition{
		{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}}}
	if _, err := r.client.AppsV1().Deployments("shop").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		got, err := r.ctrl.deployments.Deployments("shop").Get("account-service-canary-1.0.0")
		return err == nil && releases.ProgressDeadlinePassed(got) != "", nil
	})
	if got := r.sync(); len(got) != 0 {
		t.Errorf("a stuck switch wrote %v; the old version must stay", got)
	}
	r.event("SwitchStuck", "account-service-canary-1.0.0 of track \"canary\" passed its progress deadline")
	if n := r.ctrl.StuckSwitches.Load(); n != 1 {
		t.Errorf("StuckSwitches = %d, want 1", n)
	}
}

// TestSyncTemplateEditRollsOneTrackAtATime edits the PodTemplate: the
// tracks roll one at a time, production last, each once the previous one
// is Available.
func TestSyncTemplateEditRollsOneTrackAtATime(t *testing.T) {
	r := newRig(t)
	r.sync()
	ctx := context.Background()
	// The fake API server runs no Deployment controller: the test reports
	// the rollout's progress as it would.
	setAvailable := func(name string, ok bool) {
		t.Helper()
		d, err := r.client.AppsV1().Deployments("shop").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := *d.Spec.Replicas
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, UpdatedReplicas: n, AvailableReplicas: n,
			Replicas: n, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}}
		if !ok {
			d.Status.UpdatedReplicas = 0
		}
		if _, err := r.client.AppsV1().Deployments("shop").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			got, err := r.ctrl.deployments.Deployments("shop").Get(name)
			return err == nil && releases.Available(got) == ok, nil
		})
	}
	markAvailable := func(name string) { setAvailable(name, true) }
	tracks := []string{"account-service-canary-1.0", "account-service-internal-1.0.0", "account-service-paid-0.2.3", "account-service-production-0.2.3"}
	for _, name := range tracks {
		markAvailable(name)
	}
	tmpl, _ := r.client.CoreV1().PodTemplates("shop").Get(ctx, "account-service", metav1.GetOptions{})
	tmpl.Template.Spec.Containers[0].Env = append(tmpl.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "NEW", Value: "1"})
	if _, err := r.client.CoreV1().PodTemplates("shop").Update(ctx, tmpl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		got, err := r.ctrl.templates.PodTemplates("shop").Get("account-service")
		return err == nil && len(got.Template.Spec.Containers[0].Env) == len(tmpl.Template.Spec.Containers[0].Env), nil
	})
	for _, name := range tracks { // canary, internal, paid, then production
		if diff := cmp.Diff([]string{"deployments: apply " + name}, r.sync()); diff != "" {
			t.Fatalf("rolling %s (-want +got):\n%s", name, diff)
		}
		setAvailable(name, false) // its new pods are starting
		if got := r.sync(); len(got) != 0 {
			t.Fatalf("while %s rolls out: %v", name, got)
		}
		markAvailable(name)
	}
}

// TestSyncOlderDraftDoesNotTakeOver: an older ConfigMap labelled for a
// running service later (a draft, even an invalid one) does not take the
// service: the running spec keeps it and nothing is deleted.
func TestSyncOlderDraftDoesNotTakeOver(t *testing.T) {
	r := newRig(t)
	r.sync()
	ctx := context.Background()
	draft := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "account-service-draft", Namespace: "shop", UID: "draft-uid",
		CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Hour)), Labels: map[string]string{weights.ServiceLabel: "account-service"}},
		Data: map[string]string{weights.DataKey: "service: account-service\nport: 8080\n"}}
	for _, d := range []*corev1.ConfigMap{draft, func() *corev1.ConfigMap {
		valid := r.cm.DeepCopy()
		valid.Name, valid.UID, valid.ResourceVersion = "account-service-old", "old-uid", ""
		valid.CreationTimestamp = metav1.NewTime(time.Now().Add(-2 * time.Hour))
		return valid
	}()} {
		if _, err := r.client.CoreV1().ConfigMaps("shop").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		l, err := r.ctrl.configMaps.ConfigMaps("shop").List(labels.Everything())
		return err == nil && len(l) == 3, nil
	})
	if got := r.sync(); len(got) != 0 {
		t.Errorf("the running spec wrote %v", got)
	}
	for _, name := range []string{draft.Name, "account-service-old"} {
		if got, err := r.syncKey(name); len(got) != 0 || err != nil {
			t.Errorf("%s: wrote %v (err %v); the running spec must keep the service", name, got, err)
		}
	}
}

// TestDeploymentUpdatesThatSync: of a Deployment's updates, the status-only
// ones sync its spec only when they change whether it is Available or
// stuck; any other change does.
func TestDeploymentUpdatesThatSync(t *testing.T) {
	base := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "shop", UID: "u", Generation: 2, Labels: map[string]string{"app": "a"},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply},
				{Manager: "kube-controller-manager", Subresource: "status", Time: &metav1.Time{Time: time.Unix(1, 0)}},
			}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](4)},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 4, UpdatedReplicas: 4, AvailableReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse}}},
	}
	tests := []struct {
		name   string
		change func(d *appsv1.Deployment)
		sync   bool
	}{
		{"one more pod available", func(d *appsv1.Deployment) {
			d.Status.AvailableReplicas = 2
			d.ManagedFields[1].Time = &metav1.Time{Time: time.Unix(2, 0)}
		}, false},
		{"every pod available", func(d *appsv1.Deployment) {
			d.Status.AvailableReplicas = 4
			d.Status.Conditions[0].Status = corev1.ConditionTrue
		}, true},
		{"past its progress deadline", func(d *appsv1.Deployment) {
			d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing,
				Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"})
		}, true},
		{"scaled by hand", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](9); d.Generation = 3 }, true},
		{"a label edited", func(d *appsv1.Deployment) { d.Labels = map[string]string{"app": "b"} }, true},
		{"an annotation added", func(d *appsv1.Deployment) { d.Annotations = map[string]string{"x": "y"} }, true},
		{"co-owned by another apply", func(d *appsv1.Deployment) {
			d.ManagedFields = append(d.ManagedFields, metav1.ManagedFieldsEntry{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply})
		}, true},
		{"being deleted", func(d *appsv1.Deployment) { d.DeletionTimestamp = &metav1.Time{Time: time.Unix(3, 0)} }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := base.DeepCopy()
			tc.change(n)
			if got := !statusOnly(base, n) || availabilityChanged(base, n); got != tc.sync {
				t.Errorf("syncs: %v, want %v", got, tc.sync)
			}
		})
	}
}

// TestSyncCreateRefusedWithoutObject: a create refused with a Conflict that
// no object of that name explains (the quota admission's own update lost a
// race) is retried with the API's words, not "not found", and is not
// counted as a failed apply (a Conflict is a stale read, retried).
func TestSyncCreateRefusedWithoutObject(t *testing.T) {
	r := newRig(t)
	r.client.PrependReactor("patch", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.PatchAction).GetName() == "account-service-paid" {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "resourcequotas"}, "quota", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	got, err := r.syncKey(r.cm.Name)
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "create Service account-service-paid") || !strings.Contains(err.Error(), "resourcequotas") {
		t.Errorf("want the quota's Conflict, named, got %v", err)
	}
	if n := r.ctrl.ApplyErrors.Load(); n != 0 {
		t.Errorf("ApplyErrors = %d, want 0", n)
	}
	if len(got) != len(created) {
		t.Errorf("want every object tried, got %v", got)
	}
}
