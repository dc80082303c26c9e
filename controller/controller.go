// Package controller is track-controller: it turns each service spec (a
// ConfigMap labelled trackrouter.dev/service) into the track Deployments
// made from one PodTemplate, the track Services, and the HAProxy tier with
// its sidecar, keeps them as declared, and removes what the spec no longer
// asks for. It follows kubernetes/sample-controller: informers, a typed
// rate-limited workqueue, and a sync that writes only differences.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	rbacinformers "k8s.io/client-go/informers/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/trackrouter/trackrouter/controller/alerts"
	"github.com/trackrouter/trackrouter/controller/releases"
	"github.com/trackrouter/trackrouter/controller/webhook"
	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/weights"
)

// Options configure a Controller.
type Options struct {
	RouterImage string // image of the HAProxy tier (HAProxy and trackrouter)
	Log         *slog.Logger
	// ServiceGrace is how long a deleted spec's Services stay; default
	// ServiceGrace.
	ServiceGrace time.Duration
	// Leading, when set, is asked before every write: false means the
	// leader lease may be lost, and nothing is written.
	Leading func() bool
	// HealthInterval is how often every spec's health is evaluated (for
	// the metrics and alerts); default 10s.
	HealthInterval time.Duration
	// MinEndpoints: see fleet.Options.
	MinEndpoints int
	// Alerter, when set, is told every evaluation.
	Alerter *alerts.Alerter
	// Clock is the release loop's clock, its queue's delays included;
	// default the real one.
	Clock clock.WithTicker
	// Measurer is where bakes are measured; default the HAProxy pods'
	// /samples (see SamplesURL).
	Measurer releases.Measurer
	// SamplesURL is where an HAProxy pod's /samples are read; default
	// releases.PodSamplesURL (the Pod's IP). Tests on a cluster whose pods are not
	// real (kwok) name where they run the pod's sidecar.
	SamplesURL func(*corev1.Pod) (string, error)
}

// errNotLeading stops a sync whose replica may have lost the lease.
var errNotLeading = errors.New("the leader lease is not surely held: not writing")

// fence returns errNotLeading when the controller must not write.
func (c *Controller) fence() error {
	if c.opt.Leading != nil && !c.opt.Leading() {
		return errNotLeading
	}
	return nil
}

// AlertConfig and Alerter are the alerts package's, under the names
// track-controller's Config has always used.
type (
	AlertConfig = alerts.Config
	Alerter     = alerts.Alerter
)

// WebhookConfig is the webhook package's Config.
type WebhookConfig = webhook.Config

// NewAlerter is alerts.New.
func NewAlerter(cfg AlertConfig, log *slog.Logger) *Alerter { return alerts.New(cfg, log) }

// Controller reconciles service specs.
type Controller struct {
	client kubernetes.Interface
	opt    Options
	log    *slog.Logger

	configMaps  corelisters.ConfigMapLister
	templates   corelisters.PodTemplateLister
	deployments appslisters.DeploymentLister
	labeled     appslisters.DeploymentLister
	services    corelisters.ServiceLister
	accounts    corelisters.ServiceAccountLister
	roles       rbaclisters.RoleLister
	statusMaps  corelisters.ConfigMapLister
	routerPods  corelisters.PodLister
	slices      discoverylisters.EndpointSliceLister
	jobs        batchlisters.JobLister // gates' Jobs; nil without the informer
	releases    *releases.Loop

	// health is the last evaluation of every spec's health (see health.go).
	health       atomic.Pointer[[]*fleet.Health]
	roleBindings rbaclisters.RoleBindingLister
	synced       []cache.InformerSynced

	queue    workqueue.TypedRateLimitingInterface[cache.ObjectName]
	recorder record.EventRecorder
	events   record.EventBroadcaster

	mem *memory // what was said and done, by object, between syncs

	notesMu sync.Mutex
	notes   map[cache.ObjectName]*writeNote // what the current sync of each spec wrote

	// Writes counts create, update and delete calls; Syncs counts finished
	// syncs. For metrics and tests.
	Writes atomic.Int64
	Syncs  atomic.Int64
	// handled are the event handlers' registrations: each has delivered
	// its informer's initial list once synced. running counts syncs in
	// progress. Both for Idle.
	handled []cache.ResourceEventHandlerRegistration
	running atomic.Int64
	// ApplyErrors counts objects the API refused to write.
	ApplyErrors atomic.Int64
	// StuckSwitches counts new versions that passed their progress deadline.
	StuckSwitches atomic.Int64
}

// Informers are what the controller reads. main owns the factories (see
// Factories); tests may fill the informers' indexers instead.
type Informers struct {
	ConfigMaps      coreinformers.ConfigMapInformer      // spec ConfigMaps: labelled trackrouter.dev/service
	PodTemplates    coreinformers.PodTemplateInformer    // all
	Deployments     appsinformers.DeploymentInformer     // ours: managed-by track-controller
	Labeled         appsinformers.DeploymentInformer     // with app and tier labels, ours or not
	Services        coreinformers.ServiceInformer        // ours
	ServiceAccounts coreinformers.ServiceAccountInformer // ours
	Roles           rbacinformers.RoleInformer           // ours
	RoleBindings    rbacinformers.RoleBindingInformer    // ours
	// StatusConfigMaps: ours, the HAProxy pods' status reports.
	StatusConfigMaps coreinformers.ConfigMapInformer
	// RouterPods: the HAProxy tiers' pods (labels app, tier=router), and
	// EndpointSlices with app and tier labels (copied from the track
	// Services): what health is judged from.
	RouterPods     coreinformers.PodInformer
	EndpointSlices discoveryinformers.EndpointSliceInformer
	// Jobs: ours, the release gates' Jobs (nil: no Job gates run).
	Jobs batchinformers.JobInformer
}

// Factories are the informer factories of a Controller, filtered by label.
type Factories struct {
	owned, specs, templates, labeled, routerPods informers.SharedInformerFactory
}

// NewFactories makes the factories for namespace ("" is all) with resync.
func NewFactories(client kubernetes.Interface, namespace string, resync time.Duration) *Factories {
	if resync == 0 {
		resync = 10 * time.Minute
	}
	ns := informers.WithNamespace(namespace)
	byLabel := func(sel string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel })
	}
	return &Factories{
		owned:      informers.NewSharedInformerFactoryWithOptions(client, resync, ns, byLabel(fleet.SelectOwned)),
		specs:      informers.NewSharedInformerFactoryWithOptions(client, resync, ns, byLabel(fleet.SelectSpecs)),
		templates:  informers.NewSharedInformerFactoryWithOptions(client, resync, ns),
		labeled:    informers.NewSharedInformerFactoryWithOptions(client, resync, ns, byLabel(fleet.SelectLabelled)),
		routerPods: informers.NewSharedInformerFactoryWithOptions(client, resync, ns, byLabel(fleet.SelectRouterPods)),
	}
}

// Informers returns the informers the Controller needs, from f.
func (f *Factories) Informers() Informers {
	return Informers{
		ConfigMaps:      f.specs.Core().V1().ConfigMaps(),
		PodTemplates:    f.templates.Core().V1().PodTemplates(),
		Deployments:     f.owned.Apps().V1().Deployments(),
		Labeled:         f.labeled.Apps().V1().Deployments(),
		Services:        f.owned.Core().V1().Services(),
		ServiceAccounts: f.owned.Core().V1().ServiceAccounts(),
		Roles:           f.owned.Rbac().V1().Roles(),
		RoleBindings:    f.owned.Rbac().V1().RoleBindings(),
		// Labelled managed-by track-controller: the status ConfigMaps only
		// (spec ConfigMaps are the users').
		StatusConfigMaps: f.owned.Core().V1().ConfigMaps(),
		RouterPods:       f.routerPods.Core().V1().Pods(),
		EndpointSlices:   f.labeled.Discovery().V1().EndpointSlices(),
		Jobs:             f.owned.Batch().V1().Jobs(),
	}
}

// Start starts every informer asked for so far.
func (f *Factories) Start(stop <-chan struct{}) {
	for _, x := range []informers.SharedInformerFactory{f.owned, f.specs, f.templates, f.labeled, f.routerPods} {
		x.Start(stop)
	}
}

// Shutdown stops the informers and waits for them.
func (f *Factories) Shutdown() {
	for _, x := range []informers.SharedInformerFactory{f.owned, f.specs, f.templates, f.labeled, f.routerPods} {
		x.Shutdown()
	}
}

// New sets up the handlers on the informers; start them (Factories.Start),
// then call Run.
func New(client kubernetes.Interface, inf Informers, opt Options) *Controller {
	c := &Controller{
		client: client,
		opt:    opt,
		log:    opt.Log,
		mem:    newMemory(),
		notes:  map[cache.ObjectName]*writeNote{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName](),
			workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: "specs"}),
	}
	c.configMaps, c.templates, c.deployments, c.labeled = inf.ConfigMaps.Lister(), inf.PodTemplates.Lister(), inf.Deployments.Lister(), inf.Labeled.Lister()
	c.services, c.accounts, c.roles, c.roleBindings = inf.Services.Lister(), inf.ServiceAccounts.Lister(), inf.Roles.Lister(), inf.RoleBindings.Lister()
	c.synced = []cache.InformerSynced{inf.ConfigMaps.Informer().HasSynced, inf.Labeled.Informer().HasSynced, inf.PodTemplates.Informer().HasSynced,
		inf.Deployments.Informer().HasSynced, inf.Services.Informer().HasSynced, inf.ServiceAccounts.Informer().HasSynced,
		inf.Roles.Informer().HasSynced, inf.RoleBindings.Informer().HasSynced, inf.StatusConfigMaps.Informer().HasSynced}
	c.statusMaps = inf.StatusConfigMaps.Lister()
	c.routerPods, c.slices = inf.RouterPods.Lister(), inf.EndpointSlices.Lister()
	c.synced = append(c.synced, inf.RouterPods.Informer().HasSynced, inf.EndpointSlices.Informer().HasSynced)
	if inf.Jobs != nil {
		c.jobs = inf.Jobs.Lister()
		c.synced = append(c.synced, inf.Jobs.Informer().HasSynced)
	}
	c.watch(inf)
	c.events = newEventBroadcaster()
	c.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	c.recorder = c.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: ManagedBy})
	// The release loop: its own queue and workers, under the same fence.
	rcfg := releases.Config{Client: client, Log: c.log, Recorder: c.recorder, Fence: c.fence, SpecOwner: c.specOwner, Writes: &c.Writes,
		Clock: opt.Clock, Measurer: opt.Measurer, SamplesURL: opt.SamplesURL}
	if opt.Alerter != nil {
		rcfg.Alert = opt.Alerter.Send
	}
	c.releases = releases.New(rcfg, releases.Informers{Specs: inf.ConfigMaps, Status: inf.StatusConfigMaps, Jobs: inf.Jobs, RouterPods: inf.RouterPods,
		Deployments: inf.Deployments, EndpointSlices: inf.EndpointSlices})
	return c
}

// watch queues specs from the informers' events.
func (c *Controller) watch(inf Informers) {
	// The sidecars write their reports often: only the status ConfigMap's
	// coming and going is the spec's business.
	c.handle(inf.StatusConfigMaps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		DeleteFunc: c.enqueueOwner,
	}))

	// A spec's change or deletion can unblock another spec of the same
	// service (a duplicate): enqueue those too.
	// The informers' periodic resync (an update where nothing changed)
	// syncs each spec once more, spread over resyncSpread: at 300
	// services it queued them all at once, and an edit arriving then
	// waited ~1.8 s behind them. The other informers' resyncs would only
	// queue the same specs again: they are dropped.
	c.handle(inf.ConfigMaps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueService,
		UpdateFunc: func(old, obj any) {
			if resynced(old, obj) {
				c.enqueueSpread(obj)
				return
			}
			c.enqueueService(obj)
		},
		DeleteFunc: func(obj any) {
			if o, ok := unwrap(obj).(metav1.Object); ok {
				c.mem.forgetSpec(o.GetUID())
			}
			c.enqueueService(obj)
		},
	}))
	// A PodTemplate change re-syncs every spec of its namespace: there are
	// few, and only the sync knows which spec names which template.
	c.handle(inf.PodTemplates.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueNamespace,
		UpdateFunc: func(old, obj any) {
			if !resynced(old, obj) {
				c.enqueueNamespace(obj)
			}
		},
		DeleteFunc: c.enqueueNamespace,
	}))
	// Deployments with a track's labels, ours or not: one appearing or going
	// away changes what reportForeign says of the service's spec.
	byApp := func(obj any) {
		if o, ok := unwrap(obj).(metav1.Object); ok {
			c.enqueueLabelled(o.GetNamespace(), o.GetLabels()[LabelApp])
		}
	}
	c.handle(inf.Labeled.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: byApp,
		UpdateFunc: func(old, obj any) {
			if !resynced(old, obj) && !statusOnly(old, obj) {
				byApp(obj)
			}
		},
		DeleteFunc: byApp,
	}))
	owned := cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueOwner,
		UpdateFunc: func(old, obj any) {
			if !resynced(old, obj) {
				c.enqueueOwner(obj)
			}
		},
		DeleteFunc: func(obj any) {
			if o, ok := unwrap(obj).(metav1.Object); ok {
				c.mem.forgetObject(o.GetUID())
			}
			c.enqueueOwner(obj)
		},
	}
	for _, i := range []cache.SharedIndexInformer{inf.Services.Informer(), inf.ServiceAccounts.Informer(),
		inf.Roles.Informer(), inf.RoleBindings.Informer()} {
		c.handle(i.AddEventHandler(owned))
	}
	// A Deployment's status changes with every pod that starts: of those
	// updates the sync needs only the ones that change whether it is
	// Available or stuck (an old version waits for them). At 300 services
	// the others made ~10 syncs per Deployment while the fleet came up.
	deployments := owned
	deployments.UpdateFunc = func(old, obj any) {
		if resynced(old, obj) || statusOnly(old, obj) && !availabilityChanged(old, obj) {
			return
		}
		c.enqueueOwner(obj)
	}
	c.handle(inf.Deployments.Informer().AddEventHandler(deployments))
}

// newEventBroadcaster is client-go's broadcaster with room for every
// decision. Its defaults drop a spec's Events after 25 (then one per 5
// minutes: a release walk lost 5-6 of its 23 decisions) and fold more than 10
// alike in 10 minutes into one. The controller's own queue already bounds how
// often a spec is synced; the limits here only stop a runaway: 10 Events a
// second per spec after a burst of 1,000, nothing folded.
func newEventBroadcaster() record.EventBroadcaster {
	return record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{
		BurstSize:            1000,
		QPS:                  10,
		MaxEvents:            1 << 30,
		MaxIntervalInSeconds: 600,
	}))
}

// unwrap returns the object inside a deletion tombstone, or obj itself.
func unwrap(obj any) any {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tomb.Obj
	}
	return obj
}

// resyncSpread is the time over which a periodic resync's specs are synced.
const resyncSpread = time.Minute

// resynced: an update that is an informer's periodic resync, not a change.
func resynced(old, obj any) bool {
	o, ok1 := old.(metav1.Object)
	n, ok2 := obj.(metav1.Object)
	return ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion()
}

// statusOnly: an update of a Deployment that changed its status alone
// (and the status's own managed fields), nothing the controller writes or
// reads but Available and stuck.
func statusOnly(old, obj any) bool {
	o, ok1 := old.(*appsv1.Deployment)
	n, ok2 := obj.(*appsv1.Deployment)
	if !ok1 || !ok2 {
		return false
	}
	return o.Generation == n.Generation && o.UID == n.UID &&
		equality.Semantic.DeepEqual(o.Spec, n.Spec) &&
		maps.Equal(o.Labels, n.Labels) && maps.Equal(o.Annotations, n.Annotations) &&
		equality.Semantic.DeepEqual(o.OwnerReferences, n.OwnerReferences) &&
		slices.Equal(o.Finalizers, n.Finalizers) && o.DeletionTimestamp.Equal(n.DeletionTimestamp) &&
		equality.Semantic.DeepEqual(mainFields(o.ManagedFields), mainFields(n.ManagedFields))
}

// mainFields is the managed fields of the main resource, not of a
// subresource (status).
func mainFields(fields []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, f := range fields {
		if f.Subresource == "" {
			out = append(out, f)
		}
	}
	return out
}

// availabilityChanged: a Deployment became Available or stopped being so,
// or passed its progress deadline or came back from it.
func availabilityChanged(old, obj any) bool {
	o, ok1 := old.(*appsv1.Deployment)
	n, ok2 := obj.(*appsv1.Deployment)
	return !ok1 || !ok2 || releases.Available(o) != releases.Available(n) || releases.ProgressDeadlinePassed(o) != releases.ProgressDeadlinePassed(n)
}

// enqueueSpread enqueues a spec at a random time within resyncSpread.
func (c *Controller) enqueueSpread(obj any) {
	name, err := cache.ObjectToName(unwrap(obj))
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.AddAfter(name, rand.N(resyncSpread))
}

func (c *Controller) enqueue(obj any) {
	obj = unwrap(obj)
	name, err := cache.ObjectToName(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(name)
}

// enqueueLabelled enqueues the spec ConfigMaps of a service.
func (c *Controller) enqueueLabelled(namespace, service string) {
	if service == "" {
		return
	}
	cms, err := c.configMaps.ConfigMaps(namespace).List(labels.SelectorFromSet(labels.Set{weights.ServiceLabel: service}))
	if err != nil {
		return
	}
	for _, cm := range cms {
		c.enqueue(cm)
	}
}

// enqueueService enqueues a spec ConfigMap and the others labelled for the
// same service in its namespace.
func (c *Controller) enqueueService(obj any) {
	c.enqueue(obj)
	o, ok := unwrap(obj).(metav1.Object)
	if !ok {
		return
	}
	c.mem.setBlocked(o.GetUID(), false)
	service := o.GetLabels()[weights.ServiceLabel]
	if service == "" {
		return
	}
	others, err := c.configMaps.ConfigMaps(o.GetNamespace()).List(labels.SelectorFromSet(labels.Set{weights.ServiceLabel: service}))
	if err != nil {
		return
	}
	for _, cm := range others {
		if cm.Name != o.GetName() {
			c.enqueue(cm)
		}
	}
}

func (c *Controller) enqueueNamespace(obj any) {
	o, ok := unwrap(obj).(metav1.Object)
	if !ok {
		return
	}
	cms, err := c.configMaps.ConfigMaps(o.GetNamespace()).List(labels.Everything())
	if err != nil {
		return
	}
	for _, cm := range cms {
		c.enqueue(cm)
	}
}

// enqueueOwner enqueues the spec ConfigMap that controls obj.
func (c *Controller) enqueueOwner(obj any) {
	o, ok := unwrap(obj).(metav1.Object)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != "ConfigMap" {
		// A Service names its spec in an annotation (see AnnotationSpec).
		if spec := o.GetAnnotations()[AnnotationSpec]; spec != "" {
			c.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: spec})
		}
		return
	}
	c.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: ref.Name})
}

// Run waits for the informers' caches (start them first) and runs workers
// until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	defer c.events.Shutdown()
	c.log.Info("waiting for informer caches")
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("informer caches did not sync")
	}
	c.log.Info("caches synced; starting workers", "workers", workers)
	for i := 0; i < workers; i++ {
		go wait.UntilWithContext(ctx, c.runWorker, time.Second)
	}
	go wait.UntilWithContext(ctx, c.evaluateHealth, orDefault(c.opt.HealthInterval, 10*time.Second))
	c.releases.Run(ctx, releases.Workers)
	return nil
}

func (c *Controller) runWorker(ctx context.Context) {
	for c.processNext(ctx) {
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	c.running.Add(1)
	defer c.running.Add(-1)
	defer c.queue.Done(key)
	err := c.syncHandler(ctx, key)
	c.flushWrites(key)
	if err != nil {
		c.log.Warn("sync failed; retrying with backoff", "configmap", key.String(), "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	c.Syncs.Add(1)
	return true
}

// handle keeps an event handler's registration for Idle.
func (c *Controller) handle(reg cache.ResourceEventHandlerRegistration, err error) {
	if err == nil {
		c.handled = append(c.handled, reg)
	}
}

// Idle reports whether the controller has handled every event its
// informers delivered so far: each handler has seen its informer's initial
// list, no spec is queued (delayed resyncs aside) and no sync runs. Seen
// twice with Syncs unchanged between, it proves that what is already in
// the cluster has been synced: a test's proof of "nothing more to write",
// instead of a sleep.
func (c *Controller) Idle() bool {
	for _, reg := range c.handled {
		if !reg.HasSynced() {
			return false
		}
	}
	return len(c.handled) > 0 && c.queue.Len() == 0 && c.running.Load() == 0
}

// releaseLoop is c's release loop; nil for a nil c.
func (c *Controller) releaseLoop() *releases.Loop {
	if c == nil {
		return nil
	}
	return c.releases
}
