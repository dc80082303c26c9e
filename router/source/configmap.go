package source

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/weights"
)

// ConfigMapSource watches one ConfigMap through the API with an informer
// limited to that object. The informer's reflector reconnects by itself
// after an API outage and relists, so edits made meanwhile are seen.
type ConfigMapSource struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Check is how often the ConfigMap is read with a GET besides the
	// watch, to know the spec is current (default 30s). After a watch
	// error it is read every second until the API answers: client-go's own
	// backoff waited up to 41 s after an outage.
	Check time.Duration
	Log   *slog.Logger

	checked   atomic.Int64  // unix nanoseconds of the last word from the API
	fastUntil atomic.Int64  // unix nanoseconds until which the ConfigMap is read every second
	fastWake  chan struct{} // Accept refused: re-arm the poll to a second now
	wakeOnce  sync.Once
}

// Checked is when the API last confirmed the spec (an event or a GET);
// zero before that.
func (c *ConfigMapSource) Checked() time.Time {
	if n := c.checked.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Run sends the ConfigMap's service.yaml at start and after every change.
// A reflector lists and watches the one ConfigMap; its retry backoff is
// capped at 2 s (client-go's default grows to 30 s with jitter, which
// applied edits made after an outage up to 41 s late).
func (c *ConfigMapSource) Run(ctx context.Context, submit func(Update)) error {
	lw := cache.NewListWatchFromClient(c.Client.CoreV1().RESTClient(), "configmaps", c.Namespace,
		fields.OneTermEqualSelector("metadata.name", c.Name))
	deleted := func() {
		src := weights.ConfigMapSource(c.Namespace, c.Name)
		submit(Update{Source: src, Err: fmt.Errorf("ConfigMap %s/%s was deleted", c.Namespace, c.Name)})
	}
	send := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
			return
		}
		c.checked.Store(time.Now().UnixNano())
		src := weights.ConfigMapSource(cm.Namespace, cm.Name)
		data, ok := cm.Data[weights.DataKey]
		if !ok {
			submit(Update{Source: src, Version: cm.ResourceVersion, Err: fmt.Errorf("ConfigMap %s/%s has no key %s", cm.Namespace, cm.Name, weights.DataKey)})
			return
		}
		u := Update{Data: []byte(data), Source: src, Version: cm.ResourceVersion}
		if label, ok := cm.Labels[weights.ServiceLabel]; ok {
			u.Label = &label
		}
		submit(u)
	}
	listed := false
	// The store holds at most this one ConfigMap; it pushes its whole
	// content after every change.
	store := cache.NewUndeltaStore(func(items []any) {
		switch {
		case len(items) > 0:
			send(items[0])
		case listed:
			c.checked.Store(time.Now().UnixNano())
			deleted()
		}
		listed = true
	}, cache.MetaNamespaceKeyFunc)
	reflector := cache.NewReflectorWithOptions(lw, &corev1.ConfigMap{}, store, cache.ReflectorOptions{
		Name:    "configmap " + c.Namespace + "/" + c.Name,
		Backoff: &wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 20, Cap: 2 * time.Second},
	})
	go c.poll(ctx, send, submit)
	reflector.RunWithContext(ctx)
	return nil
}

// poll reads the ConfigMap every Check, and every second after a failed
// read until one succeeds and for 30 s more: it tells how fresh the spec is
// (spec age, readiness) and catches what a broken watch would miss. What it
// reads goes to submit like an event: the router ignores a spec it has.
func (c *ConfigMapSource) poll(ctx context.Context, send func(any), submit func(Update)) {
	every := c.Check
	if every == 0 {
		every = 30 * time.Second
	}
	timer := time.NewTimer(every)
	defer timer.Stop()
	// After a failed read: every second until the API answers, and for 30 s
	// more, while the watch comes back.
	failing := false
	var fastUntil time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wakeChan():
			// A refusal: read again in a second, not at the end of a
			// 30 s wait armed before it.
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(time.Second)
			continue
		case <-timer.C:
		}
		cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			if failing {
				c.Log.Info("the API answers again", "configmap", c.Namespace+"/"+c.Name)
				fastUntil = time.Now().Add(30 * time.Second)
			}
			failing = false
			send(cm)
		case apierrors.IsNotFound(err):
			failing = false
			c.checked.Store(time.Now().UnixNano())
			src := weights.ConfigMapSource(c.Namespace, c.Name)
			submit(Update{Source: src, Err: fmt.Errorf("ConfigMap %s/%s was deleted", c.Namespace, c.Name)})
		case ctx.Err() == nil:
			if !failing {
				c.Log.Warn("cannot read the ConfigMap; HAProxy keeps the last good config", "configmap", c.Namespace+"/"+c.Name, "err", err)
			}
			failing = true
		}
		next := every
		if failing || time.Now().Before(fastUntil) || time.Now().UnixNano() < c.fastUntil.Load() {
			next = time.Second
		}
		timer.Reset(next)
	}
}

// Accept refuses a spec that track-controller does not deploy, as far as
// the sidecar can see: its PodTemplate is missing, or the Services it routes
// to do not exist yet or belong to another spec (a second spec for the
// service). Its weights would otherwise go to Deployments of another spec,
// or to Services that never come. An error reaching the API (an outage)
// accepts the spec: the sidecar does not stop on an outage. After a refusal
// the ConfigMap is read every second for a minute, so the spec applies soon
// after what it waits for appears.
func (c *ConfigMapSource) Accept(spec *weights.Spec) error {
	err := c.accept(spec)
	if err != nil {
		c.fastUntil.Store(time.Now().Add(time.Minute).UnixNano())
		select {
		case c.wakeChan() <- struct{}{}:
		default:
		}
	}
	return err
}

func (c *ConfigMapSource) wakeChan() chan struct{} {
	c.wakeOnce.Do(func() { c.fastWake = make(chan struct{}, 1) })
	return c.fastWake
}

func (c *ConfigMapSource) accept(spec *weights.Spec) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	file := fmt.Sprintf("configmap/%s/%s", c.Namespace, c.Name)
	_, err := c.Client.CoreV1().PodTemplates(c.Namespace).Get(ctx, spec.Template, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &weights.FieldError{File: file, Field: "template",
			Msg: fmt.Sprintf("PodTemplate %s/%s does not exist: track-controller deploys nothing for this spec, so it is not applied", c.Namespace, spec.Template)}
	}
	if err != nil {
		c.Log.Warn("could not check the spec's PodTemplate; applying it", "template", c.Namespace+"/"+spec.Template, "err", err)
		return nil
	}
	for _, track := range spec.TrackNames() {
		if spec.Tracks[track].Address != "" {
			continue // routed to an address, not to the track's Service
		}
		name := spec.ServiceName(track)
		svc, err := c.Client.CoreV1().Services(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return &weights.FieldError{File: file, Field: "tracks." + track,
				Msg: fmt.Sprintf("Service %s/%s does not exist yet: track-controller creates it; the spec is applied once it does", c.Namespace, name)}
		case err != nil:
			c.Log.Warn("could not check the spec's Services; applying it", "service", c.Namespace+"/"+name, "err", err)
			return nil
		case svc.Annotations[specAnnotation] != "" && svc.Annotations[specAnnotation] != c.Name:
			return &weights.FieldError{File: file, Field: "service",
				Msg: fmt.Sprintf("Service %s/%s belongs to the spec in ConfigMap %s: this ConfigMap is a second spec for service %q, which track-controller refuses", c.Namespace, name, svc.Annotations[specAnnotation], spec.Service)}
		}
	}
	return nil
}

// specAnnotation is track-controller's annotation naming the spec
// ConfigMap that owns a Service.
const specAnnotation = contract.AnnotationSpec

// Recorder returns a Rejecter that emits a Warning Event on the ConfigMap
// for each rejected spec. Call Stop when done.
func (c *ConfigMapSource) Recorder(component string) *EventRejecter {
	// Room for every rejection (client-go's defaults keep 25 per spec, then
	// one per 5 minutes); each HAProxy pod reports each spec it rejects.
	b := record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{BurstSize: 100, QPS: 1, MaxEvents: 1 << 30}))
	b.StartRecordingToSink(&createOnly{typedcorev1.EventSinkImpl{Interface: c.Client.CoreV1().Events(c.Namespace)}})
	return &EventRejecter{
		broadcaster: b,
		recorder:    b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component}),
		namespace:   c.Namespace,
		name:        c.Name,
	}
}

// createOnly is the sidecar's Event sink: it creates Events and nothing
// else, as its Role allows (a sidecar that could patch Events could rewrite
// the controller's). The repeat of an Event, which client-go counts on the
// first one by a patch, is an Event of its own.
type createOnly struct{ typedcorev1.EventSinkImpl }

func (s *createOnly) Patch(e *corev1.Event, _ []byte) (*corev1.Event, error) {
	c := e.DeepCopy()
	c.Name = fmt.Sprintf("%s.%x", e.InvolvedObject.Name, time.Now().UnixNano())
	c.ResourceVersion = ""
	return s.Create(c)
}

func (s *createOnly) Update(e *corev1.Event) (*corev1.Event, error) { return s.Patch(e, nil) }

// EventRejecter emits Warning Events for rejected specs.
type EventRejecter struct {
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	namespace   string
	name        string
}

// Rejected emits a Warning Event "InvalidSpec" on the ConfigMap.
func (e *EventRejecter) Rejected(src weights.Source, err error) {
	ref := &corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: e.namespace, Name: e.name}
	e.recorder.Eventf(ref, corev1.EventTypeWarning, "InvalidSpec", "spec rejected, the last good config stays: %v", err)
}

// Stop flushes and stops the event broadcaster.
func (e *EventRejecter) Stop() { e.broadcaster.Shutdown() }
