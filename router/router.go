// Package router is the trackrouter sidecar. It keeps the latest valid spec,
// rendered, as the desired state, reads back from HAProxy the state it runs
// (config stamp, weights, map entries), and acts until the two match: a
// Runtime API update when only weights or map entries differ, a checked
// hot reload confirmed by the stamp otherwise. HAProxy never sees a config
// that failed validation, and the metrics report what HAProxy said it runs.
//
// The loop lives here (router.go, reconcile.go) and decides through the
// pure functions of decide.go and plan.go; what it talks to lives in
// subpackages named for it: haproxy (the master CLI and the supervisor),
// source (the spec file or ConfigMap, and the Events of rejected specs) and
// report (the pod's report in the status ConfigMap).
package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/router/haproxy"
	"github.com/trackrouter/trackrouter/router/source"
	"github.com/trackrouter/trackrouter/weights"
)

// Update is one version of the spec, as a source read it (see
// source.Update).
type Update = source.Update

// Reporter is told what HAProxy runs whenever that changes, e.g. to write
// it where trackctl status reads it. Report must not block.
type Reporter interface {
	Report(r *contract.Report)
}

// Rejecter is told about every spec that was rejected, e.g. to emit a
// Kubernetes Warning Event on the ConfigMap.
type Rejecter interface {
	Rejected(src weights.Source, err error)
}

// ConfigChecker runs haproxy -c. A *haproxyconf.CheckError is HAProxy's
// verdict on the config; any other error means the check could not run.
type ConfigChecker interface {
	Check(ctx context.Context, cfg []byte) error
}

// Files is the file system the router writes haproxy.cfg and the map to.
type Files interface {
	ReadFile(path string) ([]byte, error)
	// WriteFile replaces path atomically.
	WriteFile(path string, data []byte) error
}

// Router applies spec updates to HAProxy. Submit may be called from any
// goroutine; Run owns every interaction with HAProxy.
type Router struct {
	ConfigPath string // haproxy.cfg that HAProxy reads
	Render     haproxyconf.Options
	Checker    ConfigChecker
	HAProxy    HAProxy
	// SamplesURL is where this sidecar serves its measurements, told in
	// its report; empty when it serves none.
	SamplesURL  string
	Process     Process // HAProxy run by the sidecar (--run-haproxy); nil when it runs elsewhere
	Files       Files   // nil means the real file system
	Metrics     *Metrics
	Log         *slog.Logger
	Rejecter    Rejecter      // optional
	Reporter    Reporter      // optional
	MinInterval time.Duration // between two applies; bursts of edits coalesce

	// PollInterval is how often HAProxy is observed at rest; default 1s.
	PollInterval time.Duration
	// ReloadTimeout bounds how long a reload or start may take to show its
	// stamp (name resolution at load time can take minutes); default 2m.
	ReloadTimeout time.Duration
	// UnresponsiveAfter: the sidecar is not ready once HAProxy's master
	// socket has not answered for this long; default 10s.
	UnresponsiveAfter time.Duration
	// RestartAfter: a supervised HAProxy that has not answered for this long
	// is killed and started again; default 30s.
	RestartAfter time.Duration
	// SpecChecked, when set (API mode), is when the source last confirmed
	// the spec; the sidecar is not ready once that is older than
	// SpecStaleAfter (default 2m): it may route on a spec that changed.
	SpecChecked    func() time.Time
	SpecStaleAfter time.Duration
	// Accept, when set, is asked about every valid spec of a ConfigMap
	// labelled for track-controller: a spec the controller would not deploy
	// (its PodTemplate missing) is refused here too.
	Accept func(spec *weights.Spec) error
	// StartFromDisk: with Process, start HAProxy on the config already on
	// disk (written and checked by an earlier run of the sidecar in this
	// pod) while no spec has arrived, e.g. when the API is unreachable at
	// start.
	StartFromDisk bool
	// UnreadableAfter is how long the spec source may be unreadable (a file
	// between rm and cp) before the metric and the report say so; default
	// 5s.
	UnreadableAfter time.Duration
	// Clock is the time the loop decides on; nil means time.Now. Timers
	// stay real: a test that sets Clock drives the decisions, not the
	// waits.
	Clock func() time.Time
	// Backoff is the first retry delay after a failed action; it doubles up
	// to 30 times its value. Default 1s (1s to 30s).
	Backoff time.Duration

	mu     sync.Mutex
	latest *Update
	wake   chan struct{}
	status atomic.Pointer[status]
	// lastApplied is the last change HAProxy was seen running in full.
	lastApplied atomic.Pointer[Applied]
	stopping    atomic.Bool

	// Owned by Run.
	desired    *target         // the latest valid spec, rendered; nil before one
	refused    string          // the desired stamp haproxy -c refused
	good       *target         // the last target HAProxy was seen running in full
	checked    map[string]bool // stamps that passed haproxy -c
	pending    *pending        // a reload or start sent, not yet seen
	lastAnswer time.Time       // of the master socket
	reachable  bool
	loading    bool             // a reload is pending and the master refuses connections: it parses
	checking   *target          // haproxy -c runs on it in the background
	checkDone  chan checkResult // its verdict
	badLoad    string           // a stamp HAProxy failed to load (reload or start)
	reexecAt   time.Time        // when SIGUSR2 last asked the master to re-create its socket
	outage     bool             // "does not answer" was logged
	backoff    time.Duration    // doubles per failed action, 1s to 30s
	retryAt    time.Time
	invalid    *Update              // the last rejected update: a resync of it is not rejected again
	rejection  *contract.Rejection  // why invalid was rejected, for the Reporter
	unreadable *contract.Unreadable // the spec source's read error, since when
	reported   *contract.Report     // the last Report sent
	how, why   string               // the last action, logged once HAProxy runs the target
	announced  *target              // the target whose "applied" was logged
	since      time.Time
	handled    <-chan struct{} // the Process exit already acted on
	// startedOnce: haproxy ran (started or answered) under this sidecar
	// before: a start after that is a recovery, and warned.
	startedOnce bool
}

// target is a rendered spec.
type target struct {
	*haproxyconf.Rendered
	spec    *weights.Spec
	version string // the ConfigMap's resourceVersion it came from
}

// pending is a reload or start that HAProxy has not confirmed yet.
type pending struct {
	stamp    string
	before   haproxy.Proc // the master's counters before a reload
	start    bool         // a process start, not a reload
	sent     time.Time
	deadline time.Time
	why      string
}

// status is what Ready reads, published by Run.
type status struct {
	serving    bool      // HAProxy was seen running a config the router confirmed
	lastAnswer time.Time // of the master socket
	pendingEnd time.Time // a reload in progress may keep the socket silent until then
	applied    []byte    // the config HAProxy runs, as written by the router
}

// Submit hands the router a new version of the spec. Only the latest
// version is kept: a burst of edits ends in one apply of the final state.
func (r *Router) Submit(u Update) {
	r.mu.Lock()
	r.latest = &u
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Router) take() *Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.latest
	r.latest = nil
	return u
}

// Applied is a change HAProxy was seen running in full: how it got there
// (start, reload, runtime, none) and why, in the spec's words (the "applied"
// log line says the same).
type Applied struct {
	How, Why, Stamp string
}

// LastApplied is the last change HAProxy was seen running in full; zero
// before one.
func (r *Router) LastApplied() Applied {
	if a := r.lastApplied.Load(); a != nil {
		return *a
	}
	return Applied{}
}

// Applied returns the config HAProxy was last seen running, as the router
// wrote it, or nil before that.
func (r *Router) Applied() []byte {
	if st := r.status.Load(); st != nil {
		return st.applied
	}
	return nil
}

// Ready reports whether HAProxy serves a config the router confirmed (the
// latest valid spec, or the last good one while a failure is retried) and
// its master socket answered within UnresponsiveAfter.
func (r *Router) Ready() bool {
	st := r.status.Load()
	if r.stopping.Load() || st == nil || !st.serving {
		return false
	}
	if r.Process != nil && !r.Process.Running() {
		return false
	}
	now := r.now()
	if r.specStale(now) {
		return false
	}
	return now.Sub(st.lastAnswer) < r.unresponsiveAfter() || now.Before(st.pendingEnd)
}

func (r *Router) specStale(now time.Time) bool {
	if r.SpecChecked == nil {
		return false
	}
	checked := r.SpecChecked()
	return checked.IsZero() || now.Sub(checked) > orDefault(r.SpecStaleAfter, 2*time.Minute)
}

// NotReady says why the sidecar is not ready, or nil when it is.
func (r *Router) NotReady() error {
	if r.Ready() {
		return nil
	}
	switch st := r.status.Load(); {
	case r.stopping.Load():
		return errors.New("stopping")
	case st == nil || !st.serving:
		return errors.New("HAProxy does not run a config the sidecar confirmed")
	case r.Process != nil && !r.Process.Running():
		return errors.New("HAProxy is not running")
	case r.specStale(r.now()):
		return errors.New("the API has not confirmed the spec lately: it may have changed")
	default:
		return fmt.Errorf("HAProxy's master socket has not answered for %s", r.now().Sub(st.lastAnswer).Round(time.Second))
	}
}

// Stopping makes Ready false from now on: the sidecar is shutting down.
func (r *Router) Stopping() { r.stopping.Store(true) }

func (r *Router) now() time.Time {
	if r.Clock != nil {
		return r.Clock()
	}
	return time.Now()
}

func (r *Router) pollInterval() time.Duration { return orDefault(r.PollInterval, time.Second) }
func (r *Router) reloadTimeout() time.Duration {
	return orDefault(r.ReloadTimeout, 2*time.Minute)
}
func (r *Router) unresponsiveAfter() time.Duration {
	return orDefault(r.UnresponsiveAfter, 10*time.Second)
}
func (r *Router) restartAfter() time.Duration { return orDefault(r.RestartAfter, 30*time.Second) }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// pendingPoll is how often a reload in progress is observed.
const pendingPoll = 20 * time.Millisecond

// Run reconciles until ctx ends: at every new spec, every PollInterval,
// at once when a supervised HAProxy exits, and when a backoff ends.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	wake := r.wake
	r.mu.Unlock()
	r.init()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last time.Time
	for {
		var exited <-chan struct{}
		if r.Process != nil {
			if exited = r.Process.Exited(); exited == r.handled {
				exited = nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-exited:
			r.handled = exited
		case res := <-r.checkDone:
			r.checkedResult(res)
		case <-wake:
			if wait := r.MinInterval - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
			last = time.Now()
			if u := r.take(); u != nil {
				r.accept(ctx, u)
			}
		}
		timer.Reset(r.step(ctx))
	}
}

// init prepares the state that Run owns.
func (r *Router) init() {
	if r.Files == nil {
		r.Files = osFiles{}
	}
	r.checked = make(map[string]bool)
	r.checkDone = make(chan checkResult, 1)
	if r.StartFromDisk && r.Process != nil {
		if t := r.fromDisk(); t != nil {
			r.good, r.checked[t.Stamp] = t, true
		}
	}
	r.lastAnswer = r.now()
}

// accept makes a valid update the desired state, and rejects an invalid one.
func (r *Router) accept(ctx context.Context, u *Update) {
	if u.Err != nil {
		r.unreadableSource(u)
		return
	}
	if r.unreadable != nil {
		r.Log.Info("spec source readable again", "source", u.Source.String())
		r.unreadable = nil
	}
	t, err := r.prepare(u)
	if err != nil {
		// Evaluated again (what it depends on, a PodTemplate, may have
		// come), but reported once per version of the spec.
		if r.invalid != nil && sameUpdate(u, r.invalid) && sameLabel(u.Label, r.invalid.Label) {
			r.Log.Debug("spec unchanged since it was rejected", "source", u.Source.String())
			return
		}
		r.invalid = u
		r.rejection = &contract.Rejection{ResourceVersion: u.Version, Message: err.Error(), At: r.now()}
		r.reject(u.Source, err)
		return
	}
	if r.invalid != nil {
		r.Log.Info("spec valid again", "source", u.Source.String())
	}
	r.invalid, r.rejection = nil, nil
	if d := r.desired; d != nil && bytes.Equal(d.Config, t.Config) && bytes.Equal(d.Map, t.Map) {
		r.Log.Debug("spec unchanged", "source", u.Source.String())
		// The same spec in a newer version of the ConfigMap (a label or
		// an annotation changed): HAProxy runs that version too.
		d.version = u.Version
		return
	}
	if t.Stamp != r.refused {
		r.refused = ""
	}
	r.badLoad = ""
	// Applied as trackctl validate would pass it, with its warnings said
	// (weights that do not sum to 100, a last stage with an analysis).
	for _, w := range t.spec.Warnings {
		r.Log.Warn("spec warning (applied anyway)", "source", u.Source.String(), "warning", w.Error())
	}
	r.desired, r.since = t, r.now()
	r.how, r.why = "none", "HAProxy already runs it"
	// A new spec is tried at once, whatever the backoff of the last one.
	r.backoff, r.retryAt = 0, time.Time{}
	for stamp := range r.checked {
		if stamp != t.Stamp && (r.good == nil || stamp != r.good.Stamp) {
			delete(r.checked, stamp)
		}
	}
}

func sameLabel(a, b *string) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func sameUpdate(a, b *Update) bool {
	if (a.Err == nil) != (b.Err == nil) {
		return false
	}
	if a.Err != nil {
		return a.Err.Error() == b.Err.Error()
	}
	return bytes.Equal(a.Data, b.Data)
}

// target is what HAProxy should run: see targetOf.
func (r *Router) target() *target { return targetOf(r.desired, r.good, r.refused) }

func (r *Router) prepare(u *Update) (*target, error) {
	spec, err := weights.ParseService(u.Source, u.Data)
	if err != nil {
		return nil, err
	}
	if u.Label != nil && *u.Label != spec.Service {
		return nil, &weights.FieldError{File: u.Source.File, Field: "metadata.labels." + weights.ServiceLabel,
			Msg: fmt.Sprintf("label %q does not match service %q: track-controller ignores this spec (no Services exist for it), so it is not applied; rename both or neither", *u.Label, spec.Service)}
	}
	if u.Label != nil && r.Accept != nil {
		if err := r.Accept(spec); err != nil {
			return nil, err
		}
	}
	rendered, err := haproxyconf.Render(spec, r.Render)
	if err != nil {
		return nil, err
	}
	return &target{Rendered: rendered, spec: spec, version: u.Version}, nil
}

// unreadableSource records that the source could not read the spec. That
// is not a rejection (nobody wrote a bad spec) and changes nothing: HAProxy
// keeps what it runs, and a resync reads the source again.
func (r *Router) unreadableSource(u *Update) {
	msg := u.Err.Error()
	if r.unreadable != nil && r.unreadable.Message == msg {
		return
	}
	r.Log.Warn("spec source unreadable; "+r.stays(), "source", u.Source.String(), "err", msg)
	r.Metrics.ReadErrors.Inc()
	since := r.now().UTC()
	if r.unreadable != nil {
		since = r.unreadable.Since
	}
	r.unreadable = &contract.Unreadable{Message: msg, Since: since}
}

// unreadableLong is the source's read error once it has lasted longer than
// UnreadableAfter, or nil.
func (r *Router) unreadableLong(now time.Time) *contract.Unreadable {
	if r.unreadable == nil || now.Sub(r.unreadable.Since) < orDefault(r.UnreadableAfter, 5*time.Second) {
		return nil
	}
	return r.unreadable
}

func (r *Router) reject(src weights.Source, err error) {
	// Said (log, Event) before counted: whoever sees the count finds why.
	r.Log.Error("spec rejected; "+r.stays(), "source", src.String(), "err", err.Error())
	if r.Rejecter != nil {
		r.Rejecter.Rejected(src, err)
	}
	r.Metrics.Rejected.Inc()
}

// stays says what HAProxy serves after a failure.
func (r *Router) stays() string {
	if r.good == nil {
		return "no config applied yet: not ready until one is"
	}
	return "HAProxy keeps serving the last good config"
}
