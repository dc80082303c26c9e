package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/trackrouter/trackrouter/weights"
)

// syncHandler makes the objects of one spec ConfigMap match the spec. nil
// means done (including "the spec is invalid: nothing changed"); an error
// means retry with backoff.
func (c *Controller) syncHandler(ctx context.Context, key cache.ObjectName) error {
	cm, err := c.configMaps.ConfigMaps(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil // deleted: the garbage collector removes what it owned
	}
	if err != nil {
		return err
	}
	if cm.DeletionTimestamp != nil {
		return nil
	}
	data, ok := cm.Data[weights.DataKey]
	if !ok {
		c.warn(cm, "InvalidSpec", fmt.Sprintf("no key %s: nothing changed", weights.DataKey))
		return nil
	}
	src := weights.Source{File: fmt.Sprintf("configmap/%s/%s", cm.Namespace, cm.Name), Namespace: cm.Namespace, Name: cm.Name}
	spec, err := weights.ParseService(src, []byte(data))
	if err != nil {
		c.warn(cm, "InvalidSpec", fmt.Sprintf("spec rejected, nothing changed: %v", err))
		return nil
	}
	if l := cm.Labels[weights.ServiceLabel]; l != spec.Service {
		c.warn(cm, "InvalidSpec", fmt.Sprintf("label %s=%s does not match service %q: nothing changed", weights.ServiceLabel, l, spec.Service))
		return nil
	}
	tmpl, err := c.templates.PodTemplates(cm.Namespace).Get(spec.Template)
	if apierrors.IsNotFound(err) {
		c.warn(cm, "TemplateNotFound", fmt.Sprintf("PodTemplate %s/%s not found: nothing changed until it exists", cm.Namespace, spec.Template))
		return nil
	}
	if err != nil {
		return err
	}
	d, err := build(spec, cm, tmpl, c.opt.RouterImage)
	if err != nil {
		c.warn(cm, "InvalidTemplate", err.Error()+": nothing changed")
		return nil
	}

	for _, svc := range d.services {
		if err := c.applyService(ctx, cm, svc); err != nil {
			return err
		}
	}
	if err := c.applyAccount(ctx, cm, d.account); err != nil {
		return err
	}
	if err := c.applyRole(ctx, cm, d.role); err != nil {
		return err
	}
	if err := c.applyRoleBinding(ctx, cm, d.roleBinding); err != nil {
		return err
	}
	for _, track := range spec.TrackNames() {
		if err := c.applyDeployment(ctx, cm, d.tracks[track]); err != nil {
			return err
		}
	}
	if err := c.applyDeployment(ctx, cm, d.router); err != nil {
		return err
	}
	if err := c.cleanup(ctx, cm, spec, d); err != nil {
		return err
	}
	return c.reportForeign(cm, spec)
}

func (c *Controller) warn(cm *corev1.ConfigMap, reason, msg string) {
	c.log.Warn(msg, "configmap", cm.Namespace+"/"+cm.Name, "reason", reason)
	c.recorder.Event(cm, corev1.EventTypeWarning, reason, msg)
}

func (c *Controller) wrote(cm *corev1.ConfigMap, verb, kind, name string) {
	c.Writes.Add(1)
	c.log.Info(verb, "kind", kind, "name", cm.Namespace+"/"+name, "configmap", cm.Name)
	c.recorder.Eventf(cm, corev1.EventTypeNormal, verb, "%s %s %s", verb, kind, name)
}

// notOwned reports, once per object, an object that has a name the spec
// wants but that the controller does not own: it is never touched.
func (c *Controller) notOwned(cm *corev1.ConfigMap, kind string, obj metav1.Object) {
	c.reportOnce(cm, obj, fmt.Sprintf("%s %s/%s exists and is not owned by this spec: left alone", kind, obj.GetNamespace(), obj.GetName()))
}

func (c *Controller) reportOnce(cm *corev1.ConfigMap, obj metav1.Object, msg string) {
	c.reportedMu.Lock()
	seen := c.reported[obj.GetUID()]
	c.reported[obj.GetUID()] = true
	c.reportedMu.Unlock()
	if !seen {
		c.warn(cm, "NotOwned", msg)
	}
}

// reportForeign reports Deployments that carry a track's labels but that
// this spec does not own (an old version deployed by hand, say): their pods
// join the track Service, yet the controller never touches them.
func (c *Controller) reportForeign(cm *corev1.ConfigMap, spec *weights.Spec) error {
	deps, err := c.labeled.Deployments(cm.Namespace).List(labels.SelectorFromSet(labels.Set{LabelApp: spec.Service, LabelTier: TierService}))
	if err != nil {
		return err
	}
	for _, dep := range deps {
		if isOwned(dep, cm) {
			continue
		}
		track := dep.Spec.Template.Labels[LabelTrack]
		c.reportOnce(cm, dep, fmt.Sprintf("Deployment %s/%s has the labels of track %q but is not owned by this spec: its pods may join Service %s; left alone, delete it if it is a leftover",
			dep.Namespace, dep.Name, track, spec.ServiceName(track)))
	}
	return nil
}

func sameHash(have, want metav1.Object) bool {
	return have.GetAnnotations()[AnnotationHash] == want.GetAnnotations()[AnnotationHash]
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (c *Controller) applyDeployment(ctx context.Context, cm *corev1.ConfigMap, want *appsv1.Deployment) error {
	api := c.client.AppsV1().Deployments(cm.Namespace)
	have, err := c.deployments.Deployments(cm.Namespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			if live, gerr := api.Get(ctx, want.Name, metav1.GetOptions{}); gerr == nil && !isOwned(live, cm) {
				c.notOwned(cm, "Deployment", live)
				return nil
			}
		}
		if err == nil {
			c.wrote(cm, "Created", "Deployment", want.Name)
		}
		return err
	}
	if err != nil {
		return err
	}
	if !isOwned(have, cm) {
		c.notOwned(cm, "Deployment", have)
		return nil
	}
	if sameHash(have, want) && hasLabels(have.Labels, want.Labels) && *have.Spec.Replicas == *want.Spec.Replicas &&
		sameImages(have.Spec.Template.Spec, want.Spec.Template.Spec) {
		return nil
	}
	// NEVER modify objects from the store. It's a read-only, local cache.
	upd := have.DeepCopy()
	upd.Labels = merge(upd.Labels, want.Labels)
	upd.Annotations = merge(upd.Annotations, want.Annotations)
	upd.Spec.Replicas = want.Spec.Replicas
	upd.Spec.Template = want.Spec.Template
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.wrote(cm, "Updated", "Deployment", want.Name)
	return nil
}

func sameImages(have, want corev1.PodSpec) bool {
	images := func(s corev1.PodSpec) map[string]string {
		m := make(map[string]string)
		for _, c := range s.Containers {
			m[c.Name] = c.Image
		}
		return m
	}
	return maps.Equal(images(have), images(want))
}

func (c *Controller) applyService(ctx context.Context, cm *corev1.ConfigMap, want *corev1.Service) error {
	api := c.client.CoreV1().Services(cm.Namespace)
	have, err := c.services.Services(cm.Namespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			if live, gerr := api.Get(ctx, want.Name, metav1.GetOptions{}); gerr == nil && !isOwned(live, cm) {
				c.notOwned(cm, "Service", live)
				return nil
			}
		}
		if err == nil {
			c.wrote(cm, "Created", "Service", want.Name)
		}
		return err
	}
	if err != nil {
		return err
	}
	if !isOwned(have, cm) {
		c.notOwned(cm, "Service", have)
		return nil
	}
	if sameHash(have, want) && hasLabels(have.Labels, want.Labels) && have.Spec.Type == want.Spec.Type &&
		maps.Equal(have.Spec.Selector, want.Spec.Selector) && samePorts(have.Spec.Ports, want.Spec.Ports) {
		return nil
	}
	upd := have.DeepCopy()
	upd.Labels = merge(upd.Labels, want.Labels)
	upd.Annotations = merge(upd.Annotations, want.Annotations)
	upd.Spec.Type = want.Spec.Type
	upd.Spec.Selector = want.Spec.Selector
	upd.Spec.Ports = want.Spec.Ports
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.wrote(cm, "Updated", "Service", want.Name)
	return nil
}

func samePorts(have, want []corev1.ServicePort) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range want {
		h, w := have[i], want[i]
		if h.Name != w.Name || h.Port != w.Port || h.Protocol != w.Protocol || h.TargetPort != w.TargetPort {
			return false
		}
	}
	return true
}

func (c *Controller) applyAccount(ctx context.Context, cm *corev1.ConfigMap, want *corev1.ServiceAccount) error {
	have, err := c.accounts.ServiceAccounts(cm.Namespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		_, err = c.client.CoreV1().ServiceAccounts(cm.Namespace).Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			c.wrote(cm, "Created", "ServiceAccount", want.Name)
		}
		return ignoreExists(err)
	}
	if err == nil && !isOwned(have, cm) {
		c.notOwned(cm, "ServiceAccount", have)
	}
	return err
}

func (c *Controller) applyRole(ctx context.Context, cm *corev1.ConfigMap, want *rbacv1.Role) error {
	api := c.client.RbacV1().Roles(cm.Namespace)
	have, err := c.roles.Roles(cm.Namespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			c.wrote(cm, "Created", "Role", want.Name)
		}
		return ignoreExists(err)
	}
	if err != nil {
		return err
	}
	if !isOwned(have, cm) {
		c.notOwned(cm, "Role", have)
		return nil
	}
	if sameHash(have, want) && equality.Semantic.DeepEqual(have.Rules, want.Rules) {
		return nil
	}
	upd := have.DeepCopy()
	upd.Annotations = merge(upd.Annotations, want.Annotations)
	upd.Rules = want.Rules
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.wrote(cm, "Updated", "Role", want.Name)
	return nil
}

func (c *Controller) applyRoleBinding(ctx context.Context, cm *corev1.ConfigMap, want *rbacv1.RoleBinding) error {
	api := c.client.RbacV1().RoleBindings(cm.Namespace)
	have, err := c.roleBindings.RoleBindings(cm.Namespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			c.wrote(cm, "Created", "RoleBinding", want.Name)
		}
		return ignoreExists(err)
	}
	if err != nil {
		return err
	}
	if !isOwned(have, cm) {
		c.notOwned(cm, "RoleBinding", have)
		return nil
	}
	if equality.Semantic.DeepEqual(have.Subjects, want.Subjects) && have.RoleRef == want.RoleRef {
		return nil
	}
	upd := have.DeepCopy()
	upd.Subjects = want.Subjects // the roleRef is immutable and fixed by the name
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.wrote(cm, "Updated", "RoleBinding", want.Name)
	return nil
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil // the informer will bring it; the next sync checks it
	}
	return err
}

// cleanup deletes what this spec owns but no longer wants. An old version of
// a track (blue/green) goes only once the track's new Deployment is
// Available, so the track Service always has endpoints.
func (c *Controller) cleanup(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec, d *desired) error {
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})
	wantDeps := map[string]bool{d.router.Name: true}
	for _, dep := range d.tracks {
		wantDeps[dep.Name] = true
	}
	deps, err := c.deployments.Deployments(cm.Namespace).List(sel)
	if err != nil {
		return err
	}
	slices.SortFunc(deps, func(a, b *appsv1.Deployment) int { return strings.Compare(a.Name, b.Name) })
	for _, dep := range deps {
		if !isOwned(dep, cm) || wantDeps[dep.Name] {
			continue
		}
		if track := dep.Labels[LabelTrack]; dep.Labels[LabelTier] == TierService && spec.Tracks[track].Version != "" {
			next, err := c.deployments.Deployments(cm.Namespace).Get(d.tracks[track].Name)
			if err != nil || !available(next) {
				c.log.Info("keeping the old version until the new one is Available", "deployment", dep.Name, "track", track)
				continue // the new Deployment's status updates enqueue this spec again
			}
		}
		if err := c.client.AppsV1().Deployments(cm.Namespace).Delete(ctx, dep.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		c.wrote(cm, "Deleted", "Deployment", dep.Name)
	}
	wantSvcs := make(map[string]bool)
	for _, s := range d.services {
		wantSvcs[s.Name] = true
	}
	svcs, err := c.services.Services(cm.Namespace).List(sel)
	if err != nil {
		return err
	}
	for _, s := range svcs {
		if !isOwned(s, cm) || wantSvcs[s.Name] {
			continue
		}
		if err := c.client.CoreV1().Services(cm.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		c.wrote(cm, "Deleted", "Service", s.Name)
	}
	return c.cleanupRouterAccess(ctx, cm, d.account.Name)
}

// staleObject is an owned object to delete.
type staleObject struct {
	kind, name string
	del        func() error
}

// cleanupRouterAccess deletes the HAProxy tier's ServiceAccount, Role and
// RoleBinding of an earlier service name (the spec's service was renamed).
func (c *Controller) cleanupRouterAccess(ctx context.Context, cm *corev1.ConfigMap, want string) error {
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})
	ns := cm.Namespace
	var stale []staleObject
	accounts, err := c.accounts.ServiceAccounts(ns).List(sel)
	if err != nil {
		return err
	}
	for _, o := range accounts {
		if isOwned(o, cm) && o.Name != want {
			stale = append(stale, staleObject{"ServiceAccount", o.Name, func() error {
				return c.client.CoreV1().ServiceAccounts(ns).Delete(ctx, o.Name, metav1.DeleteOptions{})
			}})
		}
	}
	roles, err := c.roles.Roles(ns).List(sel)
	if err != nil {
		return err
	}
	for _, o := range roles {
		if isOwned(o, cm) && o.Name != want {
			stale = append(stale, staleObject{"Role", o.Name, func() error { return c.client.RbacV1().Roles(ns).Delete(ctx, o.Name, metav1.DeleteOptions{}) }})
		}
	}
	bindings, err := c.roleBindings.RoleBindings(ns).List(sel)
	if err != nil {
		return err
	}
	for _, o := range bindings {
		if isOwned(o, cm) && o.Name != want {
			stale = append(stale, staleObject{"RoleBinding", o.Name, func() error { return c.client.RbacV1().RoleBindings(ns).Delete(ctx, o.Name, metav1.DeleteOptions{}) }})
		}
	}
	for _, o := range stale {
		if err := o.del(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		c.wrote(cm, "Deleted", o.kind, o.name)
	}
	return nil
}
