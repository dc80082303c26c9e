// Package releases is track-controller's release loop: a controller of its
// own, keyed by spec ConfigMap, that steps each service's release
// (internal/pipeline.Step decides; this package measures, runs the gates'
// Jobs, edits the spec and records the state). It runs under the same
// leader and fence as the track reconciler, which wires it (Config).
package releases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/internal/release"
	"github.com/trackrouter/trackrouter/weights"
)

const fieldManagerPL = "track-controller-pipeline"

// Config is what the loop takes from track-controller.
type Config struct {
	Client kubernetes.Interface
	Log    *slog.Logger
	// Recorder records each decision as an Event on the spec.
	Recorder record.EventRecorder
	// Fence returns an error when the replica must not write (the leader
	// lease not surely held); nil: always write.
	Fence func() error
	// SpecOwner is the spec ConfigMap that owns cm's service when several
	// are labelled for it (the track reconciler decides which).
	SpecOwner func(cm *corev1.ConfigMap) *corev1.ConfigMap
	// Writes counts the loop's writes (the controller's counter).
	Writes *atomic.Int64
	// Clock drives the queue's delays and the bakes; default the real one.
	Clock clock.WithTicker
	// Measurer is where bakes are measured; default the HAProxy pods'
	// /samples (see SamplesURL).
	Measurer Measurer
	// SamplesURL is where an HAProxy pod's /samples are read; default
	// PodSamplesURL (the Pod's IP).
	SamplesURL func(*corev1.Pod) (string, error)
	// Alert, when set, sends an alert (a rollback, a stop).
	Alert func(subject, text string)
}

// Informers are what the loop reads: the spec ConfigMaps, the status and
// release ConfigMaps (the controller's, by label), the gates' Jobs (nil:
// no Job gates) and the HAProxy pods.
type Informers struct {
	Specs, Status coreinformers.ConfigMapInformer
	Jobs          batchinformers.JobInformer
	RouterPods    coreinformers.PodInformer
	// Deployments (the controller's) and EndpointSlices (of the track
	// Services) tell when a stage serves only the build (see settle); nil:
	// at once.
	Deployments    appsinformers.DeploymentInformer
	EndpointSlices discoveryinformers.EndpointSliceInformer
}

// Loop runs every spec's release; the leader's only.
type Loop struct {
	cfg         Config
	log         *slog.Logger
	configMaps  corelisters.ConfigMapLister
	statusMaps  corelisters.ConfigMapLister
	jobLister   batchlisters.JobLister
	routerPods  corelisters.PodLister
	deployments appslisters.DeploymentLister
	slices      discoverylisters.EndpointSliceLister

	http     *http.Client
	queue    workqueue.TypedRateLimitingInterface[cache.ObjectName]
	clock    clock.WithTicker
	measurer Measurer

	mu       sync.Mutex
	bakes    map[string]*bake // by namespace/service
	parsed   map[string]parsedSpec
	readErrs map[string]string // by namespace/pod: the last failed samples read
	wrote    map[cache.ObjectName]wrote
}

type parsedSpec struct {
	resourceVersion string
	spec            *weights.Spec
}

// bake is what the controller measured of a stage since it began baking:
// kept in memory and written down with each judgement (State.Judged), from
// which a restarted controller or a new leader goes on.
type bake struct {
	ns, service      string
	version, stage   string
	key              string // version, stage and start
	canary, baseline analysis.Tally
	next             time.Time
	last             analysis.Verdict
	canarySample     analysis.Sample
	baselineSample   analysis.Sample
}

// samplesClient reads the sidecars' samples: no redirect followed (a pod
// that answers with one is not read: its numbers are not its own), and a
// slow pod costs a look at most its timeout.
func samplesClient() *http.Client {
	return &http.Client{Timeout: 3 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return errors.New("a samples read follows no redirect")
	}}
}

// New makes the loop and registers its handlers on the informers; Run
// starts it.
func New(cfg Config, inf Informers) *Loop {
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	if cfg.Fence == nil {
		cfg.Fence = func() error { return nil }
	}
	if cfg.SpecOwner == nil {
		cfg.SpecOwner = func(cm *corev1.ConfigMap) *corev1.ConfigMap { return cm }
	}
	if cfg.Writes == nil {
		cfg.Writes = new(atomic.Int64)
	}
	p := &Loop{cfg: cfg, log: cfg.Log, http: samplesClient(), clock: clk,
		configMaps: inf.Specs.Lister(), statusMaps: inf.Status.Lister(), routerPods: inf.RouterPods.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName](),
			workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{Name: "releases", Clock: clk}),
		bakes: map[string]*bake{}, parsed: map[string]parsedSpec{}, readErrs: map[string]string{}, wrote: map[cache.ObjectName]wrote{}}
	if inf.Jobs != nil {
		p.jobLister = inf.Jobs.Lister()
	}
	if inf.Deployments != nil && inf.EndpointSlices != nil {
		p.deployments, p.slices = inf.Deployments.Lister(), inf.EndpointSlices.Lister()
	}
	p.measurer = samplesMeasurer{p}
	if cfg.Measurer != nil {
		p.measurer = cfg.Measurer
	}
	p.watch(inf)
	return p
}

// Run steps releases with workers until ctx ends. The caller has waited
// for the informers' caches (track-controller waits for the same ones).
func (p *Loop) Run(ctx context.Context, workers int) {
	defer p.queue.ShutDown()
	for range workers {
		go wait.UntilWithContext(ctx, p.worker, time.Second)
	}
	<-ctx.Done()
}

// The release loop is a controller of its own, keyed by spec ConfigMap:
// a change of the spec, of its release ConfigMap, of a gate's Job or of
// an HAProxy pod queues the service; a stage baking is looked at again
// when its next judgement is due (AddAfter), a release in flight at least
// every releaseRecheck; one slow service delays no other (each key is
// stepped by one of Workers, alone). The informers' periodic
// resync queues every spec again, so nothing waits for ever.
const (
	// Workers is how many releases are stepped at once.
	Workers        = 4
	releaseRecheck = 10 * time.Second
)

// watch queues services from the informers' events.
func (p *Loop) watch(inf Informers) {
	specs := cache.ResourceEventHandlerFuncs{
		AddFunc:    p.enqueue,
		UpdateFunc: func(_, obj any) { p.enqueue(obj) },
		DeleteFunc: p.enqueue,
	}
	inf.Specs.Informer().AddEventHandler(specs)
	// A release ConfigMap (people's keys) is owned by its spec.
	owned := cache.ResourceEventHandlerFuncs{
		AddFunc:    p.enqueueOwner,
		UpdateFunc: func(_, obj any) { p.enqueueOwner(obj) },
	}
	inf.Status.Informer().AddEventHandler(owned)
	if inf.Jobs != nil {
		inf.Jobs.Informer().AddEventHandler(owned) // a gate's Job is owned by its spec
	}
	// An HAProxy pod coming or going changes what can be measured.
	inf.RouterPods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    p.enqueueService,
		DeleteFunc: p.enqueueService,
	})
	if p.deployments != nil {
		// A track's pods starting and leaving: a stage settling.
		tracks := cache.ResourceEventHandlerFuncs{
			AddFunc:    p.enqueueService,
			UpdateFunc: func(_, obj any) { p.enqueueService(obj) },
			DeleteFunc: p.enqueueService,
		}
		inf.Deployments.Informer().AddEventHandler(tracks)
		inf.EndpointSlices.Informer().AddEventHandler(tracks)
	}
}

func (p *Loop) enqueue(obj any) {
	if o, ok := unwrap(obj).(metav1.Object); ok {
		p.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: o.GetName()})
	}
}

func (p *Loop) enqueueOwner(obj any) {
	o, ok := unwrap(obj).(metav1.Object)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "ConfigMap" {
		p.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: ref.Name})
		return
	}
	// A release ConfigMap's owner reference is not a controller's: its
	// label names the service.
	if svc := o.GetLabels()[pipeline.LabelReleaseOf]; svc != "" {
		p.enqueueSpecs(o.GetNamespace(), svc)
	}
}

// enqueueService queues the specs of the service an object is labelled
// for (app=SERVICE).
func (p *Loop) enqueueService(obj any) {
	if o, ok := unwrap(obj).(metav1.Object); ok && o.GetLabels()[contract.LabelApp] != "" {
		p.enqueueSpecs(o.GetNamespace(), o.GetLabels()[contract.LabelApp])
	}
}

// enqueueSpecs queues the spec ConfigMaps of service in ns.
func (p *Loop) enqueueSpecs(ns, service string) {
	cms, _ := p.configMaps.ConfigMaps(ns).List(labels.SelectorFromSet(labels.Set{weights.ServiceLabel: service}))
	for _, cm := range cms {
		p.queue.Add(cache.ObjectName{Namespace: cm.Namespace, Name: cm.Name})
	}
}

// worker steps queued releases until the queue shuts down.
func (p *Loop) worker(ctx context.Context) {
	for p.next(ctx) {
	}
}

func (p *Loop) next(ctx context.Context) bool {
	key, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(key)
	after, err := p.stepKey(ctx, key)
	if err != nil {
		p.log.Warn("pipeline", "spec", key.String(), "err", err)
		p.queue.AddRateLimited(key)
		return true
	}
	p.queue.Forget(key)
	if after > 0 {
		p.queue.AddAfter(key, after)
	}
	return true
}

// stepKey steps the release of the spec ConfigMap key and says when to
// look again (0: when something changes).
func (p *Loop) stepKey(ctx context.Context, key cache.ObjectName) (time.Duration, error) {
	if p.cfg.Fence() != nil {
		return time.Second, nil // not surely leading: look again
	}
	cm, err := p.configMaps.ConfigMaps(key.Namespace).Get(key.Name)
	if err != nil {
		p.forget(key)
		return 0, nil // deleted: its release ConfigMap goes with it
	}
	spec := p.parse(cm)
	if spec == nil || !pipeline.Uses(spec) {
		return 0, nil
	}
	if owner := p.cfg.SpecOwner(cm); owner.UID != cm.UID {
		return 0, nil // a duplicate spec of the service: the sync says so
	}
	if !p.settled(key, cm, spec.Service) {
		return 50 * time.Millisecond, nil // the caches have not caught up with the last write
	}
	st, err := p.safeStep(ctx, cm, spec)
	if err != nil {
		return 0, err
	}
	switch {
	case st.Phase == pipeline.Baking:
		p.mu.Lock()
		b := p.bakes[key.Namespace+"/"+spec.Service]
		p.mu.Unlock()
		if b != nil && !b.next.IsZero() {
			return max(b.next.Sub(p.now()), 10*time.Millisecond), nil
		}
		return time.Second, nil
	case st.Phase.InFlight() || st.Pending != nil:
		return releaseRecheck, nil
	}
	return 0, nil
}

// wrote is what the loop last wrote for a spec: its next step waits (up to
// settleMax) until the informers show it, so that a step triggered by the
// write's own event never reads the spec new and the state old (or the
// reverse), which would look like an edit by hand.
type wrote struct {
	spec, state string // the spec's text and the release state's JSON written
	at          time.Time
}

const settleMax = 5 * time.Second

func (p *Loop) remember(cm *corev1.ConfigMap, set func(*wrote)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := cache.ObjectName{Namespace: cm.Namespace, Name: cm.Name}
	w := p.wrote[key]
	w.at = p.now()
	set(&w)
	p.wrote[key] = w
}

// settled reports whether the caches show what was last written for key
// (or it is too long ago to wait for).
func (p *Loop) settled(key cache.ObjectName, cm *corev1.ConfigMap, service string) bool {
	p.mu.Lock()
	w, ok := p.wrote[key]
	p.mu.Unlock()
	if !ok {
		return true
	}
	specOK := w.spec == "" || cm.Data[weights.DataKey] == w.spec
	stateOK := w.state == ""
	if rel, err := p.statusMaps.ConfigMaps(key.Namespace).Get(pipeline.ConfigMapName(service)); err == nil {
		stateOK = stateOK || rel.Data[pipeline.KeyState] == w.state
	}
	if (specOK && stateOK) || p.now().Sub(w.at) > settleMax {
		p.mu.Lock()
		delete(p.wrote, key)
		p.mu.Unlock()
		return true
	}
	return false
}

// forget drops what was kept of a deleted spec.
func (p *Loop) forget(key cache.ObjectName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps, ok := p.parsed[key.String()]; ok && ps.spec != nil {
		delete(p.bakes, key.Namespace+"/"+ps.spec.Service)
	}
	delete(p.parsed, key.String())
}

// now is the pipeline's clock (Options.Clock).
func (p *Loop) now() time.Time { return p.clock.Now() }

func (p *Loop) parse(cm *corev1.ConfigMap) *weights.Spec {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := cm.Namespace + "/" + cm.Name
	if ps, ok := p.parsed[key]; ok && ps.resourceVersion == cm.ResourceVersion {
		return ps.spec
	}
	spec, err := weights.ParseService(weights.ConfigMapSource(cm.Namespace, cm.Name), []byte(cm.Data[weights.DataKey]))
	if err != nil {
		spec = nil // the sync reports it
	}
	p.parsed[key] = parsedSpec{cm.ResourceVersion, spec}
	return spec
}

// safeStep is step, with a panic turned into an error: one service's
// release must not stop every other's (nor the controller).
func (p *Loop) safeStep(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec) (st pipeline.State, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the pipeline's step failed (a bug; the release waits): %v", r)
		}
	}()
	return p.step(ctx, cm, spec)
}

// step runs one step of the service's release and makes its writes: the
// spec's edits first, then the Job, then the state (see pipeline.Step for
// why that order loses nothing).
func (p *Loop) step(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec) (pipeline.State, error) {
	rel, _ := p.statusMaps.ConfigMaps(cm.Namespace).Get(pipeline.ConfigMapName(spec.Service))
	if rel != nil && rel.Labels[pipeline.LabelReleaseOf] != spec.Service {
		// Not a release ConfigMap (examples/install's policy guards only
		// those labelled): its keys are not read, the state is written
		// over them.
		p.log.Warn("a ConfigMap named as the service's release ConfigMap is not labelled as one: not read", "configmap", cm.Namespace+"/"+rel.Name, "label", pipeline.LabelReleaseOf)
		rel = nil
	}
	var st pipeline.State
	var obs pipeline.Observed
	if rel != nil {
		var err error
		if st, obs, err = pipeline.Read(rel.Data); err != nil {
			return st, fmt.Errorf("ConfigMap %s/%s: %w", cm.Namespace, rel.Name, err)
		}
	}
	now := p.now()
	obs.Now = now
	if st.Phase == pipeline.Gates {
		obs.Jobs, obs.JobMessage = p.jobs(cm, spec, st)
	}
	if (st.Phase == pipeline.Gates || st.Phase == pipeline.Baking) && !obs.Paused && !st.Settled {
		obs.Settling, obs.Stuck = p.settling(cm.Namespace, spec, st)
	}
	if st.Phase == pipeline.Baking && !obs.Paused && obs.Settling == "" && obs.Stuck == "" && st.Settling == "" {
		obs.Verdict, obs.Measured = p.judge(ctx, cm.Namespace, spec, st, now)
	}
	next, d := pipeline.Step(st, spec, obs)
	if d != nil && len(d.Edits) > 0 && !inEffect(cm, d.Edits) {
		if cm.Annotations[AnnotationPipeline] == PipelineGitOps {
			return st, p.pend(ctx, cm, spec, st, d, now)
		}
		if err := p.editSpec(ctx, cm, spec, d); err != nil {
			return st, err
		}
	}
	if d != nil && d.Job != nil {
		if err := p.runJob(ctx, cm, spec, d.Version, d.Stage, d.Job); err != nil {
			return st, err
		}
	}
	if rel != nil && sameState(st, next) {
		return next, nil
	}
	if err := p.saveState(ctx, cm, spec, next); err != nil {
		return st, err
	}
	if d != nil {
		p.tell(cm, spec, d)
	}
	return next, nil
}

// AnnotationPipeline on a spec ConfigMap set to PipelineGitOps keeps git
// the source of the spec: the pipeline never edits the spec, it records
// each decision's edits as pending in the release ConfigMap (and an Event,
// and an alert for a rollback), and the release moves on once the spec
// synced from git holds them (trackctl follow makes them in the manifest).
const (
	AnnotationPipeline = contract.AnnotationPipeline
	PipelineGitOps     = contract.PipelineGitOps
)

// unwrap returns the object inside a deletion tombstone, or obj itself.
func unwrap(obj any) any {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tomb.Obj
	}
	return obj
}

// inEffect reports whether the spec already holds edits.
func inEffect(cm *corev1.ConfigMap, edits []release.Edit) bool {
	text := []byte(cm.Data[weights.DataKey])
	out, err := release.EditText(text, text, 0, 0, edits)
	return err == nil && string(out) == string(text)
}

// pend records, in GitOps mode, a decision whose edits the spec does not
// hold yet; the state stays where it was until they arrive from git.
func (p *Loop) pend(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec, st pipeline.State, d *pipeline.Decision, now time.Time) error {
	pending := pipeline.PendingOf(d, now)
	if pending.Same(st.Pending) {
		return nil
	}
	st.Pending = pending
	if err := p.saveState(ctx, cm, spec, st); err != nil {
		return err
	}
	msg := fmt.Sprintf("waiting for git: %s; make it with trackctl follow %s -n %s -f MANIFEST (edits: %s)", d.Reason, spec.Service, cm.Namespace, strings.Join(pending.Edits, ", "))
	p.cfg.Recorder.Event(cm, corev1.EventTypeNormal, "ReleasePending", clip(msg, 1000))
	p.log.Info("release pending in git", "service", cm.Namespace+"/"+spec.Service, "decision", string(d.Kind), "edits", strings.Join(pending.Edits, ", "))
	if d.Alert && p.cfg.Alert != nil {
		p.cfg.Alert(fmt.Sprintf("[trackrouter] %s/%s %s: %s on %s waits for git", cm.Namespace, spec.Service, d.Version, d.Kind, d.Stage), msg)
	}
	return nil
}

func sameState(a, b pipeline.State) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// judge measures the stage being baked when its interval has come, and
// returns the analysis' verdict; nil between two judgements.
func (p *Loop) judge(ctx context.Context, ns string, spec *weights.Spec, st pipeline.State, now time.Time) (*analysis.Verdict, *pipeline.Measurement) {
	a := spec.Tracks[st.Stage].Analysis
	if a == nil {
		return nil, nil
	}
	key := ns + "/" + spec.Service
	id := st.Version + "/" + st.Stage + "/" + st.Since.String()
	cfg := analysis.ConfigOf(a)
	p.mu.Lock()
	b := p.bakes[key]
	if b == nil || b.key != id {
		b = &bake{key: id, ns: ns, service: spec.Service, version: st.Version, stage: st.Stage}
		if j := st.Judged; j != nil && j.Counts != nil && !j.At.Before(st.Since) {
			// Counted by another controller (or this one before a
			// restart) since the stage began: go on from there, on the
			// same beat of looks.
			b.canary, b.baseline = analysis.RestoreTally(j.Counts.Canary), analysis.RestoreTally(j.Counts.Baseline)
			b.next = j.At.Add(cfg.Interval)
			p.log.Info("analysis: going on from the counts written at the last look", "service", key, "stage", st.Stage, "version", st.Version, "lastLook", j.At.Format(time.RFC3339), "requests", j.Requests)
		}
		p.bakes[key] = b
	}
	p.mu.Unlock()
	first := b.next.IsZero()
	if !first && now.Before(b.next) {
		return nil, nil
	}
	b.next = now.Add(cfg.Interval)
	canaryKeys, baselineKeys := comparedServers(spec, st.Stage)
	canary, baseline, unmeasured := p.measurer.Measure(ctx, ns, spec, canaryKeys, baselineKeys)
	cs, bs := b.canary.Observe(canary), b.baseline.Observe(baseline)
	m := &pipeline.Measurement{Requests: cs.Requests, Need: cfg.MinRequests, Unmeasured: unmeasured,
		Counts: &pipeline.BakeCounts{Canary: b.canary.State(), Baseline: b.baseline.State()}}
	v := analysis.Verdict{Action: analysis.Wait, Reason: "the bake's first reading: its counts start here"}
	if !first {
		v = analysis.Decide(cfg, cs, bs, now.Sub(st.Since))
	}
	p.mu.Lock()
	b.last, b.canarySample, b.baselineSample = v, cs, bs
	p.mu.Unlock()
	p.log.Info("analysis", "service", key, "stage", st.Stage, "version", st.Version, "verdict", string(v.Action), "reason", v.Reason, "unmeasured", len(unmeasured))
	return &v, m
}

// comparedServers are the servers of the stage's track, and of the last
// stage's (the baseline) in the same backends: the same users at the same
// time. Where no backend has both, the baseline is the last stage's
// servers everywhere.
func comparedServers(spec *weights.Spec, stage string) (canary, baseline []haproxyconf.ServerKey) {
	base := spec.Stages[len(spec.Stages)-1]
	for _, b := range spec.BackendNames() {
		if _, ok := spec.Backends[b][stage]; ok {
			canary = append(canary, haproxyconf.ServerKey{Backend: b, Server: stage})
			if _, ok := spec.Backends[b][base]; ok {
				baseline = append(baseline, haproxyconf.ServerKey{Backend: b, Server: base})
			}
		}
	}
	if len(baseline) == 0 {
		for _, b := range spec.BackendNames() {
			if _, ok := spec.Backends[b][base]; ok {
				baseline = append(baseline, haproxyconf.ServerKey{Backend: b, Server: base})
			}
		}
	}
	return canary, baseline
}

// Measurer is where a bake's measurements come from: each pod's counts of
// the canary's servers and of the baseline's, and the pods that could not
// be measured (with why). HAProxy's own samples (the pipelines' collect)
// are the one built; a Prometheus query would be another.
type Measurer interface {
	Measure(ctx context.Context, ns string, spec *weights.Spec, canaryKeys, baselineKeys []haproxyconf.ServerKey) (canary, baseline []analysis.PodCounts, unmeasured []string)
}

// samplesMeasurer measures from the HAProxy pods' /samples.
type samplesMeasurer struct{ p *Loop }

func (m samplesMeasurer) Measure(ctx context.Context, ns string, spec *weights.Spec, canaryKeys, baselineKeys []haproxyconf.ServerKey) ([]analysis.PodCounts, []analysis.PodCounts, []string) {
	return m.p.collect(ctx, ns, spec, canaryKeys, baselineKeys)
}

// collect reads the /samples of every HAProxy pod of the service (its
// tier's pods, as the API server lists them: the address is the Pod's IP
// and its sidecar's metrics port, never what a report says) and sums each
// pod's counts of the canary's servers and of the baseline's. A pod that
// cannot be read is named in unmeasured with the reason (analysis.Tally
// keeps what it counted of it before); a failed read is a WARN once per
// pod and error.
func (p *Loop) collect(ctx context.Context, ns string, spec *weights.Spec, canaryKeys, baselineKeys []haproxyconf.ServerKey) (canary, baseline []analysis.PodCounts, unmeasured []string) {
	all, err := p.routerPods.Pods(ns).List(labels.SelectorFromSet(labels.Set{contract.LabelApp: spec.Service, contract.LabelTier: contract.TierRouter}))
	if err != nil {
		return nil, nil, []string{"the HAProxy pods cannot be listed: " + err.Error()}
	}
	tier := spec.Service + "-haproxy-"
	var pods []*corev1.Pod
	for _, pod := range all {
		owner := metav1.GetControllerOf(pod)
		if owner == nil || owner.Kind != "ReplicaSet" || !strings.HasPrefix(owner.Name, tier) {
			continue // not the tier's: a pod with its labels is not counted
		}
		if pod.Status.Phase == corev1.PodPending || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue // has served nothing, or serves no more
		}
		pods = append(pods, pod)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	if len(pods) == 0 {
		return nil, nil, []string{fmt.Sprintf("no running HAProxy pod of %s (Deployment %s-haproxy)", spec.Service, spec.Service)}
	}
	type result struct {
		rep *contract.SamplesReport
		err error
	}
	results := make([]result, len(pods))
	var wg sync.WaitGroup
	for i, pod := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url, err := p.samplesURL(pod)
			if err != nil {
				results[i] = result{nil, err}
				return
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			rep, err := contract.FetchSamples(rctx, p.http, url)
			results[i] = result{rep, err}
		}()
	}
	wg.Wait()
	sum := func(pod string, rep *contract.SamplesReport, keys []haproxyconf.ServerKey) analysis.PodCounts {
		out := analysis.PodCounts{Pod: pod, Worker: rep.Worker, LatencyEpoch: rep.LatencyEpoch}
		for _, k := range keys {
			if c, ok := rep.PodCounts(pod, k); ok {
				out.Requests += c.Requests
				out.Errors += c.Errors
				out.Latency.Add(&c.Latency)
			}
		}
		return out
	}
	for i, pod := range pods {
		p.readWarn(ns, pod.Name, results[i].err)
		if results[i].err != nil {
			unmeasured = append(unmeasured, fmt.Sprintf("pod %s: %v", pod.Name, results[i].err))
			continue
		}
		canary = append(canary, sum(pod.Name, results[i].rep, canaryKeys))
		baseline = append(baseline, sum(pod.Name, results[i].rep, baselineKeys))
	}
	return canary, baseline, unmeasured
}

// readWarn logs a pod's failed samples read once per error, and its
// recovery.
func (p *Loop) readWarn(ns, pod string, err error) {
	key := ns + "/" + pod
	p.mu.Lock()
	last, seen := p.readErrs[key]
	if err == nil {
		delete(p.readErrs, key)
	} else {
		p.readErrs[key] = err.Error()
	}
	p.mu.Unlock()
	switch {
	case err != nil && (!seen || last != err.Error()):
		p.log.Warn("cannot read an HAProxy pod's samples: its stage cannot be promoted until it is read", "pod", key, "err", err)
	case err == nil && seen:
		p.log.Info("samples read again", "pod", key)
	}
}

// samplesURL is where pod's sidecar serves /samples: Options.SamplesURL,
// by default the Pod's IP and the port named "metrics" of its container
// named "trackrouter" (as the controller makes the tier).
func (p *Loop) samplesURL(pod *corev1.Pod) (string, error) {
	if f := p.cfg.SamplesURL; f != nil {
		return f(pod)
	}
	return PodSamplesURL(pod)
}

// PodSamplesURL is the default of Options.SamplesURL.
func PodSamplesURL(pod *corev1.Pod) (string, error) {
	if pod.Status.PodIP == "" {
		return "", errors.New("the Pod has no IP yet")
	}
	for _, c := range pod.Spec.Containers {
		if c.Name != contract.ContainerRouter {
			continue
		}
		for _, port := range c.Ports {
			if port.Name == "metrics" {
				return "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(port.ContainerPort))) + contract.SamplesPath, nil
			}
		}
	}
	return "", fmt.Errorf("the Pod's container %s declares no port named metrics", contract.ContainerRouter)
}

// jobs is what became of the stage's Job gates.
func (p *Loop) jobs(cm *corev1.ConfigMap, spec *weights.Spec, st pipeline.State) (map[string]pipeline.JobStatus, map[string]string) {
	ns := cm.Namespace
	status, msgs := map[string]pipeline.JobStatus{}, map[string]string{}
	if p.jobLister == nil {
		return status, msgs
	}
	for i, g := range spec.Tracks[st.Stage].Gates {
		if g.Job == nil {
			continue
		}
		name := st.JobName(spec.Service, st.Stage, i)
		job, err := p.jobLister.Jobs(ns).Get(name)
		if err != nil {
			continue // absent
		}
		if !ownGateJob(job, gateJob(cm, spec, st.Version, st.Stage, name, i)) {
			status[name] = pipeline.JobFailed
			msgs[name] = fmt.Sprintf("a Job named %s is there that track-controller did not make for this gate (its owner, ServiceAccount or containers differ): the gate fails; delete that Job and deploy again", name)
			continue
		}
		status[name] = pipeline.JobRunning
		for _, c := range job.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				status[name] = pipeline.JobSucceeded
			case batchv1.JobFailed:
				status[name] = pipeline.JobFailed
				msgs[name] = strings.TrimSpace(c.Reason + ": " + c.Message)
			}
		}
	}
	return status, msgs
}

// runJob starts a gate's Job against the stage's track: its containers
// get TRACK_URL, SERVICE, TRACK and VERSION. The spec's Job is of an
// allowed shape (weights: no Secret, volume, node or identity field); the
// controller makes it run as the service's gates ServiceAccount (no
// rights, no token), non-root-escalating, with the RuntimeDefault seccomp
// profile, for an hour at most unless the spec says less, owned by the
// spec. A Job already there under the name is this gate's only if it is
// what gateJob makes (see jobs).
func (p *Loop) runJob(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec, version, stage string, g *pipeline.JobGate) error {
	if err := p.cfg.Fence(); err != nil {
		return err
	}
	job := gateJob(cm, spec, version, stage, g.Name, g.Index)
	_, err := p.cfg.Client.BatchV1().Jobs(cm.Namespace).Create(ctx, job, metav1.CreateOptions{FieldManager: contract.ManagedBy})
	if apierrors.IsAlreadyExists(err) {
		return nil // jobs tells whether it is this gate's
	}
	if err == nil {
		p.cfg.Writes.Add(1)
	}
	return err
}

// gateDeadline is a gate Job's activeDeadlineSeconds when its spec sets
// none.
const gateDeadline = int64(3600)

// gateJob is the Job of gate index on stage for version.
func gateJob(cm *corev1.ConfigMap, spec *weights.Spec, version, stage, name string, index int) *batchv1.Job {
	job := spec.Tracks[stage].Gates[index].Job.DeepCopy()
	job.Name, job.Namespace, job.GenerateName, job.ResourceVersion = name, cm.Namespace, "", ""
	if job.Labels == nil {
		job.Labels = map[string]string{}
	}
	job.Labels[contract.LabelManagedBy], job.Labels[contract.LabelApp], job.Labels[contract.LabelTrack], job.Labels[pipeline.LabelReleaseOf] = contract.ManagedBy, spec.Service, stage, spec.Service
	job.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(cm, corev1.SchemeGroupVersion.WithKind("ConfigMap"))}
	if job.Spec.TTLSecondsAfterFinished == nil {
		day := int32(86400)
		job.Spec.TTLSecondsAfterFinished = &day
	}
	if job.Spec.ActiveDeadlineSeconds == nil {
		d := gateDeadline
		job.Spec.ActiveDeadlineSeconds = &d
	}
	pod := &job.Spec.Template.Spec
	pod.ServiceAccountName = contract.GatesAccount(spec.Service)
	pod.AutomountServiceAccountToken = ptr.To(false)
	if pod.SecurityContext == nil {
		pod.SecurityContext = &corev1.PodSecurityContext{}
	}
	pod.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	// Never root: the kubelet refuses a container whose user is 0; an
	// image whose user is root, with no user named, runs as nobody.
	pod.SecurityContext.RunAsNonRoot = ptr.To(true)
	if pod.SecurityContext.RunAsUser == nil {
		pod.SecurityContext.RunAsUser = ptr.To(nobody)
	}
	url := fmt.Sprintf("http://%s.%s.svc:%d", spec.ServiceName(stage), cm.Namespace, spec.Port)
	if a := spec.Tracks[stage].Address; a != "" {
		url = "http://" + a
	}
	env := []corev1.EnvVar{{Name: "TRACK_URL", Value: url}, {Name: "SERVICE", Value: spec.Service}, {Name: "TRACK", Value: stage}, {Name: "VERSION", Value: version}}
	for i := range pod.Containers {
		c := &pod.Containers[i]
		c.Env = append(slices.Clone(env), c.Env...)
		if c.SecurityContext == nil {
			c.SecurityContext = &corev1.SecurityContext{}
		}
		c.SecurityContext.AllowPrivilegeEscalation = ptr.To(false)
	}
	return job
}

// nobody is the user a gate's Job runs as when its spec names none.
const nobody int64 = 65534

// ownGateJob reports whether live is the Job gateJob makes (want): owned
// by the spec, running as the gates ServiceAccount without a token, with
// the same containers' images, commands, arguments and environment, and
// no volume. A Job someone made beforehand under the name (it is
// predictable) is not, whatever its labels say.
func ownGateJob(live, want *batchv1.Job) bool {
	owner := metav1.GetControllerOf(live)
	lp, wp := live.Spec.Template.Spec, want.Spec.Template.Spec
	if owner == nil || owner.UID != want.OwnerReferences[0].UID || lp.ServiceAccountName != wp.ServiceAccountName ||
		lp.AutomountServiceAccountToken == nil || *lp.AutomountServiceAccountToken || len(lp.Volumes) > 0 || len(lp.InitContainers) > 0 ||
		len(lp.Containers) != len(wp.Containers) {
		return false
	}
	for i, c := range lp.Containers {
		w := wp.Containers[i]
		if c.Image != w.Image || !slices.Equal(c.Command, w.Command) || !slices.Equal(c.Args, w.Args) || len(c.EnvFrom) > 0 || len(c.VolumeMounts) > 0 ||
			!slices.EqualFunc(c.Env, w.Env, func(a, b corev1.EnvVar) bool {
				return a.Name == b.Name && a.Value == b.Value && a.ValueFrom == nil && b.ValueFrom == nil
			}) {
			return false
		}
	}
	return true
}

// editSpec writes a decision's edits to the spec ConfigMap, as trackctl's
// release commands do: the bytes of the changed values only, validated,
// an update carrying the resourceVersion read, recorded in the history.
func (p *Loop) editSpec(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec, d *pipeline.Decision) error {
	if err := p.cfg.Fence(); err != nil {
		return err
	}
	// The values come from the spec and the release state: checked as
	// trackctl checks a person's (plain tokens, nothing else changed).
	if err := release.CheckValues(d.Edits); err != nil {
		return fmt.Errorf("the pipeline's %s (nothing written): %w", d.Kind, err)
	}
	text := []byte(cm.Data[weights.DataKey])
	edited, err := release.EditText(text, text, 0, 0, d.Edits)
	if err != nil {
		return fmt.Errorf("edit the spec: %w", err)
	}
	after, err := weights.ParseService(spec.Source, edited)
	if err != nil {
		return fmt.Errorf("the pipeline's %s would make the spec invalid (nothing written): %w", d.Kind, err)
	}
	if err := release.OnlyAsked(spec, after, d.Edits); err != nil {
		return fmt.Errorf("the pipeline's %s (nothing written): %w", d.Kind, err)
	}
	changes := weights.ChangeWords(spec, after)
	entry := release.HistoryEntry{Time: p.now().UTC().Truncate(time.Second), User: contract.ManagedBy, Command: "pipeline " + string(d.Kind),
		Reason: d.Reason, From: cm.ResourceVersion, Changes: changes}
	if _, err := release.WriteSpec(ctx, p.cfg.Client, cm, edited, entry, fieldManagerPL); err != nil {
		return fmt.Errorf("write the spec (%s): %w", d.Kind, err)
	}
	p.remember(cm, func(w *wrote) { w.spec = string(edited) })
	p.cfg.Writes.Add(1)
	return nil
}

// saveState applies the state to the release ConfigMap (owned by the
// spec, so that it goes with it).
func (p *Loop) saveState(ctx context.Context, cm *corev1.ConfigMap, spec *weights.Spec, st pipeline.State) error {
	if err := p.cfg.Fence(); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ac := corev1ac.ConfigMap(pipeline.ConfigMapName(spec.Service), cm.Namespace).
		WithLabels(map[string]string{contract.LabelManagedBy: contract.ManagedBy, pipeline.LabelReleaseOf: spec.Service}).
		WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion("v1").WithKind("ConfigMap").WithName(cm.Name).WithUID(cm.UID)).
		WithData(map[string]string{pipeline.KeyState: string(b)})
	if _, err := p.cfg.Client.CoreV1().ConfigMaps(cm.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: fieldManagerPL, Force: true}); err != nil {
		return fmt.Errorf("record the release state: %w", err)
	}
	p.remember(cm, func(w *wrote) { w.state = string(b) })
	p.cfg.Writes.Add(1)
	return nil
}

// tell records a decision as an Event on the spec, and alerts on a
// rollback or a failed gate.
func (p *Loop) tell(cm *corev1.ConfigMap, spec *weights.Spec, d *pipeline.Decision) {
	kind := corev1.EventTypeNormal
	if d.Alert || d.Kind == pipeline.Abort {
		kind = corev1.EventTypeWarning
	}
	reason := "Release" + strings.ToUpper(string(d.Kind[:1])) + string(d.Kind[1:])
	p.cfg.Recorder.Event(cm, kind, reason, clip(d.Reason, 1000))
	p.log.Info("release", "service", cm.Namespace+"/"+spec.Service, "decision", string(d.Kind), "version", d.Version, "stage", d.Stage, "reason", d.Reason)
	if d.Alert && p.cfg.Alert != nil {
		name := cm.Namespace + "/" + spec.Service
		p.cfg.Alert(fmt.Sprintf("[trackrouter] %s %s %s on %s", name, d.Version, map[pipeline.Kind]string{pipeline.Rollback: "rolled back", pipeline.Stop: "stopped"}[d.Kind], d.Stage),
			d.Reason+fmt.Sprintf("\ntrackctl status %s -n %s shows the release.", spec.Service, cm.Namespace))
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Collector exports the bakes in flight of the loop current returns (the
// leader's; nil while none runs), as it last judged them.
func Collector(current func() *Loop) prometheus.Collector { return releaseCollector{current} }

type releaseCollector struct {
	current func() *Loop
}

var (
	releaseLabels   = []string{"namespace", "service", "stage", "version", "side"}
	descBakeReqs    = prometheus.NewDesc("trackcontroller_release_bake_requests", "Requests the stage's track (side=canary) and the baseline served since the bake began, as last judged.", releaseLabels, nil)
	descBakeErrors  = prometheus.NewDesc("trackcontroller_release_bake_errors", "5xx and failed connections of the canary and of the baseline since the bake began, as last judged.", releaseLabels, nil)
	descBakeP95     = prometheus.NewDesc("trackcontroller_release_bake_p95_seconds", "95th latency percentile of the canary and of the baseline since the bake began, as last judged (NaN without latencies).", releaseLabels, nil)
	descBakeVerdict = prometheus.NewDesc("trackcontroller_release_bake_verdict", "1 for the analysis' last verdict (action: wait, promote, rollback) of the stage baking.", []string{"namespace", "service", "stage", "version", "action"}, nil)
)

func (r releaseCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBakeReqs, descBakeErrors, descBakeP95, descBakeVerdict} {
		ch <- d
	}
}

func (r releaseCollector) Collect(ch chan<- prometheus.Metric) {
	p := r.current()
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.bakes {
		if b.last.Action == "" {
			continue // not judged yet
		}
		for side, s := range map[string]analysis.Sample{"canary": b.canarySample, "baseline": b.baselineSample} {
			l := []string{b.ns, b.service, b.stage, b.version, side}
			ch <- prometheus.MustNewConstMetric(descBakeReqs, prometheus.GaugeValue, float64(s.Requests), l...)
			ch <- prometheus.MustNewConstMetric(descBakeErrors, prometheus.GaugeValue, float64(s.Errors), l...)
			p95 := math.NaN()
			if s.Latency.Total() > 0 {
				p95 = s.Latency.Quantile(0.95) / 1000
			}
			ch <- prometheus.MustNewConstMetric(descBakeP95, prometheus.GaugeValue, p95, l...)
		}
		ch <- prometheus.MustNewConstMetric(descBakeVerdict, prometheus.GaugeValue, 1, b.ns, b.service, b.stage, b.version, string(b.last.Action))
	}
}
