package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/trackrouter/trackrouter/controller/releases"
	"github.com/trackrouter/trackrouter/weights"
)

// syncHandler makes the objects of one spec ConfigMap match the spec. nil
// means done (including "the spec is invalid: nothing changed"); an error
// means retry with backoff.
func (c *Controller) syncHandler(ctx context.Context, key cache.ObjectName) error {
	cm, err := c.configMaps.ConfigMaps(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		// Deleted: the garbage collector removes what it owned; its
		// Services go after a grace period, unless it comes back.
		return c.retireServices(ctx, key)
	}
	c.mem.notGone(key)
	if err != nil {
		return err
	}
	if cm.DeletionTimestamp != nil {
		return nil
	}
	spec, d, err := c.desiredOf(ctx, cm)
	if err != nil || d == nil {
		return err // refused (said in an Event, nothing changed), or retried
	}
	c.mem.setBlocked(cm.UID, false)
	if err := c.apply(ctx, cm, spec, d); err != nil {
		return err // cleanup waits until everything wanted is in place
	}
	if c.blocked(cm) {
		// An object of someone else's holds a wanted name; its deletion is
		// not seen by the informers (they watch our objects only): look again.
		c.queue.AddAfter(cache.MetaObjectToName(cm), blockedRecheck)
	}
	if err := c.cleanup(ctx, cm, spec, d); err != nil {
		return err
	}
	return c.reportForeign(cm, spec)
}

// desiredOf reads cm's spec and builds the objects it wants. A spec that
// cannot be applied is said in a Warning Event on cm and returns a nil
// desired and a nil error (nothing changes until cm or its PodTemplate
// does); a second spec for a running service has its objects pruned.
func (c *Controller) desiredOf(ctx context.Context, cm *corev1.ConfigMap) (*weights.Spec, *desired, error) {
	data, ok := cm.Data[weights.DataKey]
	if !ok {
		c.warnSpec(cm, "InvalidSpec", fmt.Sprintf("no key %s: nothing changed", weights.DataKey))
		return nil, nil, nil
	}
	spec, err := weights.ParseService(weights.ConfigMapSource(cm.Namespace, cm.Name), []byte(data))
	if err != nil {
		c.warnSpec(cm, "InvalidSpec", fmt.Sprintf("spec rejected, nothing changed: %v", err))
		return nil, nil, nil
	}
	if l := cm.Labels[weights.ServiceLabel]; l != spec.Service {
		c.warnSpec(cm, "InvalidSpec", fmt.Sprintf("label %s=%s does not match service %q: nothing changed", weights.ServiceLabel, l, spec.Service))
		return nil, nil, nil
	}
	if owner := c.specOwner(cm); owner != cm {
		// A second spec for a service would put its versions behind the
		// first one's Services: it is refused as a whole and owns nothing.
		c.warnSpec(cm, "DuplicateSpec", fmt.Sprintf("service %q is already defined in this namespace by ConfigMap %s, which runs it (or is older): this spec is ignored and owns nothing; delete one of them", spec.Service, owner.Name))
		c.reportOnce(owner, cm, fmt.Sprintf("ConfigMap %s/%s also defines service %q: it is ignored while this one exists", cm.Namespace, cm.Name, spec.Service))
		return nil, nil, c.pruneAll(ctx, cm)
	}
	tmpl, err := c.templates.PodTemplates(cm.Namespace).Get(spec.Template)
	if apierrors.IsNotFound(err) {
		c.warnSpec(cm, "TemplateNotFound", fmt.Sprintf("PodTemplate %s/%s not found: nothing changed until it exists", cm.Namespace, spec.Template))
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	d, err := build(spec, cm, tmpl, c.opt.RouterImage)
	if err != nil {
		c.warnSpec(cm, "InvalidTemplate", err.Error()+": nothing changed")
		return nil, nil, nil
	}
	return spec, d, nil
}

// apply writes the desired objects that differ from the live ones. One
// object failing does not stop the others; each says why in an Event.
func (c *Controller) apply(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec, d *desired) error {
	var errs []error
	for _, svc := range d.services {
		errs = append(errs, reconcile(ctx, c, cm, c.serviceKind(), svc))
	}
	errs = append(errs,
		reconcile(ctx, c, cm, c.accountKind(), d.account),
		reconcileIf(ctx, c, cm, c.accountKind(), d.gates),
		reconcile(ctx, c, cm, c.roleKind(), d.role),
		reconcile(ctx, c, cm, c.roleBindingKind(), d.roleBinding),
		reconcile(ctx, c, cm, c.statusKind(), d.status))
	order := rolloutOrder(spec)
	changed, settling := make(map[string]bool), make(map[string]bool)
	for _, track := range order {
		want := d.tracks[track]
		changed[track] = c.templateChange(cm, want)
		live, err := c.deployments.Deployments(cm.Namespace).Get(want.Name)
		settling[track] = err == nil && !releases.Available(live)
	}
	write, held := rollout(order, changed, settling)
	for _, track := range order {
		if held[track] != "" {
			c.log.Info("holding a pod template change until an earlier track is Available", "deployment", d.tracks[track].Name, "waiting_for", held[track])
		}
	}
	for _, track := range write {
		if spec.Tracks[track].Autoscaled {
			errs = append(errs, c.autoscaled(ctx, cm, track, d.tracks[track]))
		} else {
			errs = append(errs, reconcile(ctx, c, cm, c.deploymentKind(), d.tracks[track]))
		}
	}
	errs = append(errs, reconcile(ctx, c, cm, c.deploymentKind(), d.router))
	for _, err := range errs {
		// A conflict is a stale read, retried at once: not worth an alarm.
		if err != nil && !errors.Is(err, errNotLeading) && !apierrors.IsConflict(err) {
			c.ApplyErrors.Add(1)
			c.warn(cm, "ApplyFailed", err.Error())
		}
	}
	return errors.Join(errs...)
}

// rollout decides which track Deployments a sync writes. A pod template
// change (a PodTemplate edit) rolls the tracks one at a time in order
// (production last): a track whose template changes is held while an
// earlier track rolls (its template changes now) or is settling (not
// Available). held names, for each track held, the track it waits for; the
// rolling track's status updates enqueue the spec again. changed and
// settling are by track.
func rollout(order []string, changed, settling map[string]bool) (write []string, held map[string]string) {
	held = make(map[string]string)
	rolling := ""
	for _, track := range order {
		if changed[track] && rolling != "" {
			held[track] = rolling
			continue
		}
		write = append(write, track)
		if changed[track] || settling[track] {
			rolling = track
		}
	}
	return write, held
}

// HandOverManager owns the replicas of an autoscaled track's Deployment
// before an autoscaler does: Server-Side Apply resets a field to its default
// when its last manager lets go, so the controller hands it over, at its
// current value, instead of dropping it.
const HandOverManager = "track-controller-autoscaled"

// autoscaled reconciles the Deployment of a track with replicas: auto. It
// never sets replicas itself: a Deployment whose replicas it owned is handed
// over first, and a new version starts with as many replicas as the track
// runs now, not 1.
func (c *Controller) autoscaled(ctx context.Context, cm *corev1.ConfigMap, track string, want *appsv1.Deployment) error {
	live, err := c.deployments.Deployments(cm.Namespace).Get(want.Name)
	switch {
	case err == nil && metav1.IsControlledBy(live, cm):
		if have, err := appsv1ac.ExtractDeployment(live, FieldManager); err == nil && have.Spec != nil && have.Spec.Replicas != nil && live.Spec.Replicas != nil {
			if err := c.handOver(ctx, live.Namespace, live.Name, *live.Spec.Replicas); err != nil {
				return err
			}
		}
		return reconcile(ctx, c, cm, c.deploymentKind(), want)
	case err != nil:
		// A new version: as many replicas as the track runs now.
		var current int32
		others, _ := c.deployments.Deployments(cm.Namespace).List(labels.SelectorFromSet(labels.Set{LabelApp: want.Labels[LabelApp], LabelTier: TierService, LabelTrack: track}))
		for _, o := range others {
			if metav1.IsControlledBy(o, cm) && o.Spec.Replicas != nil && *o.Spec.Replicas > current {
				current = *o.Spec.Replicas
			}
		}
		if err := reconcile(ctx, c, cm, c.deploymentKind(), want); err != nil {
			return err
		}
		if current > 1 {
			// The name may be someone else's Deployment, left alone
			// (reported NotOwned): its replicas are not ours to set.
			if got, err := c.deploymentKind().get(ctx, want.Namespace, want.Name); err != nil || !metav1.IsControlledBy(got, cm) {
				return err
			}
			if err := c.handOver(ctx, want.Namespace, want.Name, current); err != nil {
				return err
			}
			c.recorder.Eventf(cm, corev1.EventTypeNormal, "AutoscaledSwitch",
				"track %s is autoscaled: Deployment %s starts with %d replicas, as the track runs now; a HorizontalPodAutoscaler targets a Deployment by name: point it at %s", track, want.Name, current, want.Name)
		}
		return nil
	}
	return reconcile(ctx, c, cm, c.deploymentKind(), want) // not ours: reported there
}

// handOver applies replicas as HandOverManager.
func (c *Controller) handOver(ctx context.Context, ns, name string, replicas int32) error {
	if err := c.fence(); err != nil {
		return err
	}
	ac := appsv1ac.Deployment(name, ns).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(replicas))
	if _, err := c.client.AppsV1().Deployments(ns).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: HandOverManager, Force: true}); err != nil {
		return fmt.Errorf("hand over the replicas of Deployment %s: %w", name, err)
	}
	c.Writes.Add(1)
	return nil
}

// ServiceGrace is how long the Services of a deleted spec stay, so that a
// spec deleted and created again (kubectl replace --force, a Helm
// reinstall) finds them, and their ClusterIPs, where they were.
const ServiceGrace = time.Minute

// retireServices deletes the Services of the deleted spec key once it has
// been gone for the grace period.
func (c *Controller) retireServices(ctx context.Context, key cache.ObjectName) error {
	svcs, err := c.services.Services(key.Namespace).List(labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy}))
	if err != nil {
		return err
	}
	var mine []*corev1.Service
	for _, s := range svcs {
		if s.Annotations[AnnotationSpec] == key.Name && metav1.GetControllerOf(s) == nil {
			mine = append(mine, s)
		}
	}
	grace := c.opt.ServiceGrace
	if grace == 0 {
		grace = ServiceGrace
	}
	if len(mine) == 0 {
		c.mem.notGone(key)
		return nil
	}
	since := c.mem.goneSince(key, time.Now())
	if wait := grace - time.Since(since); wait > 0 {
		c.log.Info("spec deleted; keeping its Services for the grace period in case it comes back", "configmap", key.String(), "for", wait.Round(time.Second).String())
		c.queue.AddAfter(key, wait)
		return nil
	}
	for _, s := range mine {
		if err := c.fence(); err != nil {
			return err
		}
		uid, rv := s.UID, s.ResourceVersion
		err := c.client.CoreV1().Services(key.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err == nil {
			c.Writes.Add(1)
			c.log.Info("Deleted", "kind", "Service", "name", key.Namespace+"/"+s.Name, "configmap", key.Name, "why", "its spec is gone")
		}
	}
	c.mem.notGone(key)
	return nil
}

// rolloutOrder is the order in which pod template changes roll out: every
// track but production by name, then production.
func rolloutOrder(spec *weights.Spec) []string {
	var order []string
	for _, t := range spec.TrackNames() {
		if t != "production" {
			order = append(order, t)
		}
	}
	if _, ok := spec.Tracks["production"]; ok {
		order = append(order, "production")
	}
	return order
}

// templateChange reports whether applying want would change the pod
// template of its existing Deployment (which rolls its pods).
func (c *Controller) templateChange(cm *corev1.ConfigMap, want *appsv1.Deployment) bool {
	live, err := c.deployments.Deployments(cm.Namespace).Get(want.Name)
	if err != nil || !metav1.IsControlledBy(live, cm) {
		return false // created, or not ours: nothing rolls
	}
	if c.templateEdited(live) {
		return true
	}
	have, err := appsv1ac.ExtractDeployment(live, FieldManager)
	if err != nil {
		return false
	}
	desired, err := toApply[appsv1ac.DeploymentApplyConfiguration](want, "apps/v1", "Deployment")
	if err != nil {
		return false
	}
	diff, err := fieldDiff(have, desired)
	return err == nil && strings.Contains(diff, "spec.template")
}

// specOwner returns the ConfigMap that owns cm's service in its namespace
// when several are labelled for it. The one whose objects run the service
// keeps it, whatever its age: labelling an old draft must not take a
// running service down. When none runs it yet, the oldest valid one (by
// creation, then name) gets it.
func (c *Controller) specOwner(cm *corev1.ConfigMap) *corev1.ConfigMap {
	service := cm.Labels[weights.ServiceLabel]
	all, err := c.configMaps.ConfigMaps(cm.Namespace).List(labels.SelectorFromSet(labels.Set{weights.ServiceLabel: service}))
	if err != nil || len(all) < 2 {
		return cm
	}
	running := make(map[types.UID]bool)
	deps, _ := c.deployments.Deployments(cm.Namespace).List(labels.SelectorFromSet(labels.Set{LabelApp: service}))
	for _, d := range deps {
		if ref := metav1.GetControllerOf(d); ref != nil {
			running[ref.UID] = true
		}
	}
	var incumbents, valid []*corev1.ConfigMap
	for _, o := range all {
		if o.DeletionTimestamp != nil {
			continue
		}
		if running[o.UID] {
			incumbents = append(incumbents, o)
		}
		if o.UID == cm.UID || validSpec(o) {
			valid = append(valid, o)
		}
	}
	if len(incumbents) > 0 {
		return oldest(incumbents)
	}
	if len(valid) > 0 {
		return oldest(valid)
	}
	return cm
}

// validSpec reports whether a ConfigMap holds a spec the controller would
// accept: it parses, and its label names its service.
func validSpec(cm *corev1.ConfigMap) bool {
	data, ok := cm.Data[weights.DataKey]
	if !ok {
		return false
	}
	spec, err := weights.ParseService(weights.Source{Namespace: cm.Namespace, Name: cm.Name}, []byte(data))
	return err == nil && cm.Labels[weights.ServiceLabel] == spec.Service
}

func oldest(cms []*corev1.ConfigMap) *corev1.ConfigMap {
	best := cms[0]
	for _, o := range cms[1:] {
		if o.CreationTimestamp.Before(&best.CreationTimestamp) ||
			o.CreationTimestamp.Equal(&best.CreationTimestamp) && o.Name < best.Name {
			best = o
		}
	}
	return best
}

// pruneAll deletes everything cm controls.
func (c *Controller) pruneAll(ctx context.Context, cm *corev1.ConfigMap) error {
	none := func(metav1.Object) bool { return false }
	return errors.Join(
		prune(ctx, c, cm, c.deploymentKind(), func(o *appsv1.Deployment) bool { return none(o) }),
		prune(ctx, c, cm, c.serviceKind(), func(o *corev1.Service) bool { return none(o) }),
		prune(ctx, c, cm, c.accountKind(), func(o *corev1.ServiceAccount) bool { return none(o) }),
		prune(ctx, c, cm, c.roleKind(), func(o *rbacv1.Role) bool { return none(o) }),
		prune(ctx, c, cm, c.roleBindingKind(), func(o *rbacv1.RoleBinding) bool { return none(o) }),
	)
}

// blockedRecheck is how soon a spec blocked by someone else's object is
// synced again.
const blockedRecheck = 15 * time.Second

// blocked reports whether the last sync of cm met an object it does not own
// holding a name it wants.
func (c *Controller) blocked(cm *corev1.ConfigMap) bool {
	return c.mem.blocked(cm.UID)
}

// warnSpec is warn for a verdict on the spec itself: said once per version
// of the ConfigMap, not at every sync that an unrelated event causes.
func (c *Controller) warnSpec(cm *corev1.ConfigMap, reason, msg string) {
	key := cm.ResourceVersion + "\x00" + reason + "\x00" + msg
	if c.mem.newVerdict(cm.UID, key) {
		c.warn(cm, reason, msg)
	}
}

func (c *Controller) warn(cm *corev1.ConfigMap, reason, msg string) {
	c.log.Warn(msg, "configmap", cm.Namespace+"/"+cm.Name, "reason", reason)
	c.recorder.Event(cm, corev1.EventTypeWarning, reason, msg)
}

// wrote records a write: a counter and a log line now, and a line of the
// Normal Event its sync says at its end (flushWrites): one Event per verb
// and sync, not one per object (a service's first sync writes 14 objects;
// at 300 services per-object Events were as many API writes as the
// objects themselves). changed names the fields an update put back or
// changed.
func (c *Controller) wrote(cm *corev1.ConfigMap, verb, kind, name, changed string) {
	c.Writes.Add(1)
	line := kind + " " + name
	if changed == "" {
		c.log.Info(verb, "kind", kind, "name", cm.Namespace+"/"+name, "configmap", cm.Name)
	} else {
		c.log.Info(verb, "kind", kind, "name", cm.Namespace+"/"+name, "configmap", cm.Name, "fields", changed)
		line += " (" + changed + ")"
	}
	key := cache.MetaObjectToName(cm)
	c.notesMu.Lock()
	defer c.notesMu.Unlock()
	n := c.notes[key]
	if n == nil {
		n = &writeNote{cm: cm, lines: map[string][]string{}}
		c.notes[key] = n
	}
	if _, ok := n.lines[verb]; !ok {
		n.verbs = append(n.verbs, verb)
	}
	n.lines[verb] = append(n.lines[verb], line)
}

// writeNote is what one sync of a spec wrote, by verb in order.
type writeNote struct {
	cm    *corev1.ConfigMap
	verbs []string
	lines map[string][]string
}

// maxNote bounds an Event's message (the API server refuses past 1 KiB in
// events.k8s.io/v1).
const maxNote = 900

// flushWrites says what the sync of key wrote: one Normal Event per verb
// ("Created 14 objects: Deployment a, Service b, ...").
func (c *Controller) flushWrites(key cache.ObjectName) {
	c.notesMu.Lock()
	n := c.notes[key]
	delete(c.notes, key)
	c.notesMu.Unlock()
	if n == nil {
		return
	}
	for _, verb := range n.verbs {
		lines := n.lines[verb]
		var msg string
		if len(lines) == 1 {
			msg = verb + " " + lines[0]
		} else {
			msg = fmt.Sprintf("%s %d objects: ", verb, len(lines))
			for i, l := range lines {
				if len(msg)+len(l) > maxNote {
					msg += fmt.Sprintf("… and %d more (the controller's log names each)", len(lines)-i)
					break
				}
				if i > 0 {
					msg += ", "
				}
				msg += l
			}
		}
		c.recorder.Event(n.cm, corev1.EventTypeNormal, verb, msg)
	}
}

// notOwned reports, once per object, an object that has a name the spec
// wants but that the controller does not own: it is never touched.
func (c *Controller) notOwned(cm *corev1.ConfigMap, kind string, obj metav1.Object) {
	c.mem.setBlocked(cm.UID, true)
	c.reportOnce(cm, obj, fmt.Sprintf("%s %s/%s exists and is not owned by this spec: left alone", kind, obj.GetNamespace(), obj.GetName()))
}

func (c *Controller) reportOnce(cm *corev1.ConfigMap, obj metav1.Object, msg string) {
	c.warnOnce(cm, obj, "NotOwned", msg)
}

// reportEvery is how often a Warning about the same object is said again:
// Events expire after an hour, and the problem may still be there.
const reportEvery = 50 * time.Minute

// warnOnce emits a Warning Event about obj, again only after reportEvery;
// it reports whether it did.
func (c *Controller) warnOnce(cm *corev1.ConfigMap, obj metav1.Object, reason, msg string) bool {
	due := c.mem.reportDue(obj.GetUID(), time.Now(), reportEvery)
	if due {
		c.warn(cm, reason, msg)
	}
	return due
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
		if metav1.IsControlledBy(dep, cm) {
			continue
		}
		track := dep.Spec.Template.Labels[LabelTrack]
		c.reportOnce(cm, dep, fmt.Sprintf("Deployment %s/%s has the labels of track %q but is not owned by this spec: its pods may join Service %s; left alone, delete it if it is a leftover",
			dep.Namespace, dep.Name, track, spec.ServiceName(track)))
	}
	return nil
}

// cleanup deletes what this spec controls but no longer wants. An old
// version of a track (blue/green) goes only once the track's new Deployment
// is Available, so the track Service always has endpoints.
func (c *Controller) cleanup(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec, d *desired) error {
	wantDeps := map[string]bool{d.router.Name: true}
	for _, dep := range d.tracks {
		wantDeps[dep.Name] = true
	}
	keepDep := func(dep *appsv1.Deployment) bool {
		if wantDeps[dep.Name] {
			return true
		}
		track := dep.Labels[LabelTrack]
		if dep.Labels[LabelTier] != TierService || spec.Tracks[track].Version == "" {
			return false
		}
		next, err := c.deployments.Deployments(cm.Namespace).Get(d.tracks[track].Name)
		if err == nil && !releases.Available(next) && releases.ProgressDeadlinePassed(next) != "" {
			if c.warnOnce(cm, next, "SwitchStuck", fmt.Sprintf("Deployment %s/%s of track %q passed its progress deadline without becoming Available; the old version %s keeps serving. Check its pods (image, quota), or set the track's version back",
				next.Namespace, next.Name, track, dep.Name)) {
				c.StuckSwitches.Add(1)
			}
		}
		if err != nil || !releases.Available(next) {
			c.log.Info("keeping the old version until the new one is Available", "deployment", dep.Name, "track", track)
			return true // the new Deployment's status updates enqueue this spec again
		}
		return false
	}
	wantSvcs := make(map[string]bool)
	for _, s := range d.services {
		wantSvcs[s.Name] = true
	}
	access := func(o metav1.Object) bool { return o.GetName() == d.account.Name }
	account := func(o *corev1.ServiceAccount) bool { return access(o) || d.gates != nil && o.Name == d.gates.Name }
	return errors.Join(
		prune(ctx, c, cm, c.deploymentKind(), keepDep),
		prune(ctx, c, cm, c.serviceKind(), func(s *corev1.Service) bool { return wantSvcs[s.Name] }),
		prune(ctx, c, cm, c.accountKind(), account),
		prune(ctx, c, cm, c.roleKind(), func(o *rbacv1.Role) bool { return access(o) }),
		prune(ctx, c, cm, c.roleBindingKind(), func(o *rbacv1.RoleBinding) bool { return access(o) }),
	)
}
