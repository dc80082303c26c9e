package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
)

// FieldManager is the field manager of every write: with Server-Side Apply
// the fields the controller sets are owned by it, and a hand edit to one of
// them is put back; fields others set (an HPA, a mutating webhook) are left.
const FieldManager = "track-controller"

// object is what the controller writes: a typed API object.
type object interface {
	metav1.Object
	runtime.Object
}

// kind is how the controller reads, applies and deletes one kind of object.
// Every kind goes through the same reconcile and cleanup, below.
type kind[T object, AC any] struct {
	name       string // "Deployment"
	apiVersion string
	cached     func(ns, name string) (T, error)
	list       func(ns string, sel labels.Selector) ([]T, error)
	get        func(ctx context.Context, ns, name string) (T, error)
	apply      func(ctx context.Context, ns string, ac *AC) error
	extract    func(live T) (*AC, error)
	delete     func(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error
	// replace, when set, puts back a live object that another field manager
	// changed in a part the controller owns whole (foreign says so): an apply
	// cannot remove what others own, and a probe switched from httpGet to
	// tcpSocket by hand would merge into an invalid object.
	foreign func(live T) bool
	replace func(ctx context.Context, live, want T) error
	// owns, when set, says whether the spec owns an object, instead of
	// metav1.IsControlledBy (Services: see AnnotationSpec).
	owns func(obj T, cm *corev1.ConfigMap) bool
}

// ownedBy reports whether cm owns obj, by the kind's rule.
func (k kind[T, AC]) ownedBy(obj T, cm *corev1.ConfigMap) bool {
	if k.owns != nil {
		return k.owns(obj, cm)
	}
	return metav1.IsControlledBy(obj, cm)
}

// ownsService: a Service is the spec's when it is annotated with the spec's
// name and managed by the controller, or (written by an earlier version)
// controlled by the spec.
func ownsService(svc *corev1.Service, cm *corev1.ConfigMap) bool {
	if svc.Labels[LabelManagedBy] == ManagedBy && svc.Annotations[AnnotationSpec] == cm.Name {
		return true
	}
	return metav1.IsControlledBy(svc, cm)
}

func (c *Controller) deploymentKind() kind[*appsv1.Deployment, appsv1ac.DeploymentApplyConfiguration] {
	return kind[*appsv1.Deployment, appsv1ac.DeploymentApplyConfiguration]{
		name: "Deployment", apiVersion: "apps/v1",
		cached: func(ns, name string) (*appsv1.Deployment, error) { return c.deployments.Deployments(ns).Get(name) },
		list: func(ns string, sel labels.Selector) ([]*appsv1.Deployment, error) {
			return c.deployments.Deployments(ns).List(sel)
		},
		get: func(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
			return c.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		},
		apply: func(ctx context.Context, ns string, ac *appsv1ac.DeploymentApplyConfiguration) error {
			_, err := c.client.AppsV1().Deployments(ns).Apply(ctx, ac, applyOptions)
			return err
		},
		extract: func(live *appsv1.Deployment) (*appsv1ac.DeploymentApplyConfiguration, error) {
			return appsv1ac.ExtractDeployment(live, FieldManager)
		},
		delete: func(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
			return c.client.AppsV1().Deployments(ns).Delete(ctx, name, opts)
		},
		foreign: c.templateEdited,
		replace: func(ctx context.Context, live, want *appsv1.Deployment) error {
			// The cached object may be behind: update the API server's own.
			fresh, err := c.client.AppsV1().Deployments(live.Namespace).Get(ctx, live.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			fresh.Spec.Template = want.Spec.Template
			upd, err := c.client.AppsV1().Deployments(live.Namespace).Update(ctx, fresh, metav1.UpdateOptions{FieldManager: FieldManager})
			if err != nil {
				return err
			}
			c.mem.setReplaced(upd.UID, upd.Generation)
			return nil
		},
	}
}

// templateEdited reports whether another field manager changed the pod
// template of a Deployment since the controller last put it back. After a
// replace other managers may still co-own key fields whose values did not
// change (a container's name): the generation tells whether the template
// changed since.
func (c *Controller) templateEdited(live *appsv1.Deployment) bool {
	if !othersOwn(live.ManagedFields, "f:spec", "f:template") {
		return false
	}
	gen, ok := c.mem.replacedAt(live.UID)
	return !ok || live.Generation != gen
}

// othersOwn reports whether a field manager other than the controller's
// owns a field under path (in the main resource, not a subresource).
func othersOwn(fields []metav1.ManagedFieldsEntry, path ...string) bool {
	for _, mf := range fields {
		if mf.Manager == FieldManager || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var m map[string]any
		if json.Unmarshal(mf.FieldsV1.Raw, &m) != nil {
			continue
		}
		found := true
		for _, p := range path {
			next, ok := m[p].(map[string]any)
			if !ok {
				found = false
				break
			}
			m = next
		}
		if found {
			return true
		}
	}
	return false
}

func (c *Controller) serviceKind() kind[*corev1.Service, corev1ac.ServiceApplyConfiguration] {
	return kind[*corev1.Service, corev1ac.ServiceApplyConfiguration]{
		name: "Service", apiVersion: "v1",
		cached: func(ns, name string) (*corev1.Service, error) { return c.services.Services(ns).Get(name) },
		list: func(ns string, sel labels.Selector) ([]*corev1.Service, error) {
			return c.services.Services(ns).List(sel)
		},
		get: func(ctx context.Context, ns, name string) (*corev1.Service, error) {
			return c.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		},
		apply: func(ctx context.Context, ns string, ac *corev1ac.ServiceApplyConfiguration) error {
			_, err := c.client.CoreV1().Services(ns).Apply(ctx, ac, applyOptions)
			return err
		},
		extract: func(live *corev1.Service) (*corev1ac.ServiceApplyConfiguration, error) {
			return corev1ac.ExtractService(live, FieldManager)
		},
		delete: func(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
			return c.client.CoreV1().Services(ns).Delete(ctx, name, opts)
		},
		owns: ownsService,
	}
}

func (c *Controller) accountKind() kind[*corev1.ServiceAccount, corev1ac.ServiceAccountApplyConfiguration] {
	return kind[*corev1.ServiceAccount, corev1ac.ServiceAccountApplyConfiguration]{
		name: "ServiceAccount", apiVersion: "v1",
		cached: func(ns, name string) (*corev1.ServiceAccount, error) { return c.accounts.ServiceAccounts(ns).Get(name) },
		list: func(ns string, sel labels.Selector) ([]*corev1.ServiceAccount, error) {
			return c.accounts.ServiceAccounts(ns).List(sel)
		},
		get: func(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error) {
			return c.client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
		},
		apply: func(ctx context.Context, ns string, ac *corev1ac.ServiceAccountApplyConfiguration) error {
			_, err := c.client.CoreV1().ServiceAccounts(ns).Apply(ctx, ac, applyOptions)
			return err
		},
		extract: func(live *corev1.ServiceAccount) (*corev1ac.ServiceAccountApplyConfiguration, error) {
			return corev1ac.ExtractServiceAccount(live, FieldManager)
		},
		delete: func(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
			return c.client.CoreV1().ServiceAccounts(ns).Delete(ctx, name, opts)
		},
	}
}

func (c *Controller) roleKind() kind[*rbacv1.Role, rbacv1ac.RoleApplyConfiguration] {
	return kind[*rbacv1.Role, rbacv1ac.RoleApplyConfiguration]{
		name: "Role", apiVersion: "rbac.authorization.k8s.io/v1",
		cached: func(ns, name string) (*rbacv1.Role, error) { return c.roles.Roles(ns).Get(name) },
		list:   func(ns string, sel labels.Selector) ([]*rbacv1.Role, error) { return c.roles.Roles(ns).List(sel) },
		get: func(ctx context.Context, ns, name string) (*rbacv1.Role, error) {
			return c.client.RbacV1().Roles(ns).Get(ctx, name, metav1.GetOptions{})
		},
		apply: func(ctx context.Context, ns string, ac *rbacv1ac.RoleApplyConfiguration) error {
			_, err := c.client.RbacV1().Roles(ns).Apply(ctx, ac, applyOptions)
			return err
		},
		extract: func(live *rbacv1.Role) (*rbacv1ac.RoleApplyConfiguration, error) {
			return rbacv1ac.ExtractRole(live, FieldManager)
		},
		delete: func(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
			return c.client.RbacV1().Roles(ns).Delete(ctx, name, opts)
		},
	}
}

func (c *Controller) statusKind() kind[*corev1.ConfigMap, corev1ac.ConfigMapApplyConfiguration] {
	return kind[*corev1.ConfigMap, corev1ac.ConfigMapApplyConfiguration]{
		name: "ConfigMap", apiVersion: "v1",
		cached: func(ns, name string) (*corev1.ConfigMap, error) { return c.statusMaps.ConfigMaps(ns).Get(name) },
		list: func(ns string, sel labels.Selector) ([]*corev1.ConfigMap, error) {
			return c.statusMaps.ConfigMaps(ns).List(sel)
		},
		get: func(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
			return c.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		},
		// Metadata only: each sidecar owns its own data key.
		apply: func(ctx context.Context, ns string, ac *corev1ac.ConfigMapApplyConfiguration) error {
			_, err := c.client.CoreV1().ConfigMaps(ns).Apply(ctx, ac, applyOptions)
			return err
		},
		extract: func(live *corev1.ConfigMap) (*corev1ac.ConfigMapApplyConfiguration, error) {
			return corev1ac.ExtractConfigMap(live, FieldManager)
		},
		delete: func(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
			return c.client.CoreV1().ConfigMaps(ns).Delete(ctx, name, opts)
		},
	}
}

func (c *Controller) roleBindingKind() kind[*rbacv1.RoleBinding, rbacv1ac.RoleBindingApplyConfiguration] {
	return kind[*rbacv1.RoleBinding, rbacv1ac.RoleBindingApplyConfiguration]{
		name: "RoleBinding", apiVersion: "rbac.authorization.k8s.io/v1",
		cached: func(ns, name string) (*rbacv1.RoleBinding, error) { return c.roleBindings.RoleBindings(ns).Get(name) },
		list: func(ns string, sel labels.Selector) ([]*rbacv1.RoleBinding, error) {
			return c.roleBindings.RoleBindings(ns).List(sel)
		},
		get: func(ctx context.Context, ns, name string) (*rbacv1.RoleBinding, error) {
			return c.client.RbacV1().RoleBindings(ns).Get(ctx, name, metav1.GetOptions{})
		},
		apply: func(ctx context.Context, ns string, ac *rbacv1ac.RoleBindingApplyConfiguration) error {
			_, err := c.client.RbacV1().RoleBindings(ns).Apply(ctx, ac, applyOptions)
			return err
		},
		extract: func(live *rbacv1.RoleBinding) (*rbacv1ac.RoleBindingApplyConfiguration, error) {
			return rbacv1ac.ExtractRoleBinding(live, FieldManager)
		},
		delete: func(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
			return c.client.RbacV1().RoleBindings(ns).Delete(ctx, name, opts)
		},
	}
}

// applyOptions: the controller's fields are its own, whoever edited them.
var applyOptions = metav1.ApplyOptions{FieldManager: FieldManager, Force: true}

// reconcile makes one object hold the desired fields. An object of that name
// that the spec does not control is never touched, only reported. With no
// difference between the desired fields and the fields the controller's
// field manager owns on the live object, nothing is sent.
// reconcileIf is reconcile of an object the spec may not ask for (nil).
func reconcileIf[AC any](ctx context.Context, c *Controller, cm *corev1.ConfigMap, k kind[*corev1.ServiceAccount, AC], want *corev1.ServiceAccount) error {
	if want == nil {
		return nil
	}
	return reconcile(ctx, c, cm, k, want)
}

func reconcile[T object, AC any](ctx context.Context, c *Controller, cm *corev1.ConfigMap, k kind[T, AC], want T) error {
	live, err := k.cached(cm.Namespace, want.GetName())
	if apierrors.IsNotFound(err) {
		// Not in the cache, yet it may exist (cache lag, or someone else's
		// object, which a plain apply would take over): create it only if
		// no object has that name, and read the one that has.
		var created bool
		var refused error
		if created, refused, err = createOnly(ctx, c, cm, k, want); err != nil || created {
			return err
		}
		// Refused: by an object that holds the name (a Conflict), or for
		// another reason, which someone else's object can also cause (the
		// apply is merged with it before the versions are compared).
		live, err = k.get(ctx, cm.Namespace, want.GetName())
		if apierrors.IsNotFound(err) {
			// No object: the refusal in the API's words (a webhook's, a
			// quota update's Conflict), or it went away since; retried.
			return refused
		}
	}
	if err != nil {
		return err
	}
	if !k.ownedBy(live, cm) {
		c.notOwned(cm, k.name, live)
		return nil
	}
	if k.foreign != nil && k.foreign(live) {
		if err := c.fence(); err != nil {
			return err
		}
		if err := k.replace(ctx, live, want); err != nil {
			return fmt.Errorf("replace %s %s: %w", k.name, want.GetName(), err)
		}
		c.wrote(cm, "Updated", k.name, want.GetName(), "spec.template (edited by another field manager)")
		return nil
	}
	desired, err := toApply[AC](want, k.apiVersion, k.name)
	if err != nil {
		return fmt.Errorf("%s %s: %w", k.name, want.GetName(), err)
	}
	have, err := k.extract(live)
	if err != nil {
		return fmt.Errorf("extract %s %s: %w", k.name, want.GetName(), err)
	}
	diff, err := fieldDiff(have, desired)
	if err != nil || diff == "" {
		return err
	}
	if err := c.fence(); err != nil {
		return err
	}
	if err := k.apply(ctx, cm.Namespace, desired); err != nil {
		return fmt.Errorf("apply %s %s: %w", k.name, want.GetName(), err)
	}
	c.wrote(cm, "Updated", k.name, want.GetName(), diff)
	return nil
}

// noObjectHas is a resourceVersion no stored object has (etcd's first
// write is revision 2). An apply that carries it creates the object when
// there is none, and fails with a Conflict when there is one: a create that
// cannot take over someone else's object, in one request instead of a GET
// and an apply. The object is then owned exactly as by any apply.
const noObjectHas = "1"

// createOnly creates want by Server-Side Apply unless an object of its name
// exists. created: it did; refused: the API server's answer otherwise (a
// Conflict when an object holds the name); err: it could not ask.
func createOnly[T object, AC any](ctx context.Context, c *Controller, cm *corev1.ConfigMap, k kind[T, AC], want T) (created bool, refused, err error) {
	obj := want.DeepCopyObject().(T)
	obj.SetResourceVersion(noObjectHas)
	desired, err := toApply[AC](obj, k.apiVersion, k.name)
	if err != nil {
		return false, nil, fmt.Errorf("%s %s: %w", k.name, want.GetName(), err)
	}
	if err := c.fence(); err != nil {
		return false, nil, err
	}
	if err := k.apply(ctx, cm.Namespace, desired); err != nil {
		return false, fmt.Errorf("create %s %s: %w", k.name, want.GetName(), err), nil
	}
	c.wrote(cm, "Created", k.name, want.GetName(), "")
	return true, nil, nil
}

// toApply turns a typed object into its apply configuration: the JSON of
// the fields set in it, without the empty status and null timestamps that a
// typed object always carries.
func toApply[AC any](obj object, apiVersion, kindName string) (*AC, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	m["apiVersion"], m["kind"] = apiVersion, kindName
	b, err = json.Marshal(dropNulls(m))
	if err != nil {
		return nil, err
	}
	ac := new(AC)
	return ac, json.Unmarshal(b, ac)
}

func dropNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
				continue
			}
			t[k] = dropNulls(e)
		}
	case []any:
		for i, e := range t {
			t[i] = dropNulls(e)
		}
	}
	return v
}

// fieldDiff compares two apply configurations field by field and names the
// paths that differ, down to four levels ("spec.template.spec.containers";
// "" when equal). Empty objects count as absent: a typed struct that is not
// omitempty ("strategy": {}) sets no field, and the field manager owns none
// there.
func fieldDiff(have, want any) (string, error) {
	h, err := asJSON(have)
	if err != nil {
		return "", err
	}
	w, err := asJSON(want)
	if err != nil {
		return "", err
	}
	r := &pathReporter{paths: make(map[string]bool)}
	cmp.Equal(h, w, cmpopts.IgnoreMapEntries(func(_ string, v any) bool { return isEmpty(v) }), cmp.Reporter(r))
	return strings.Join(slices.Sorted(maps.Keys(r.paths)), ", "), nil
}

// asJSON is v as JSON values.
func asJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(b, &out)
}

// isEmpty: an object with nothing but empty objects in it.
func isEmpty(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for _, e := range m {
		if !isEmpty(e) {
			return false
		}
	}
	return true
}

// pathReporter collects the field paths of cmp's differences, cut at a list
// or at four levels.
type pathReporter struct {
	steps cmp.Path
	paths map[string]bool
}

func (r *pathReporter) PushStep(ps cmp.PathStep) { r.steps = append(r.steps, ps) }
func (r *pathReporter) PopStep()                 { r.steps = r.steps[:len(r.steps)-1] }

func (r *pathReporter) Report(rs cmp.Result) {
	if rs.Equal() {
		return
	}
	var keys []string
	for _, ps := range r.steps {
		if _, isList := ps.(cmp.SliceIndex); isList || len(keys) == 4 {
			break
		}
		if mi, ok := ps.(cmp.MapIndex); ok {
			keys = append(keys, mi.Key().String())
		}
	}
	r.paths[strings.Join(keys, ".")] = true
}

// prune deletes the objects of one kind that the spec controls but no longer
// wants; keep says which stay. Deletes carry the object's UID and
// resourceVersion, so a stale view never deletes a newer object.
func prune[T object, AC any](ctx context.Context, c *Controller, cm *corev1.ConfigMap, k kind[T, AC], keep func(T) bool) error {
	objs, err := k.list(cm.Namespace, labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy}))
	if err != nil {
		return err
	}
	slices.SortFunc(objs, func(a, b T) int { return strings.Compare(a.GetName(), b.GetName()) })
	for _, o := range objs {
		if !k.ownedBy(o, cm) || keep(o) {
			continue
		}
		if err := c.fence(); err != nil {
			return err
		}
		uid, rv := o.GetUID(), o.GetResourceVersion()
		err := k.delete(ctx, cm.Namespace, o.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		switch {
		case apierrors.IsNotFound(err):
			continue // gone already: nothing deleted here
		case apierrors.IsConflict(err):
			return fmt.Errorf("delete %s %s: changed since it was read: %w", k.name, o.GetName(), err)
		case err != nil:
			return err
		}
		c.wrote(cm, "Deleted", k.name, o.GetName(), "")
	}
	return nil
}
