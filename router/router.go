// Package router is the trackrouter sidecar. It keeps the latest valid spec,
// rendered, as the desired state, reads back from HAProxy the state it runs
// (config stamp, weights, map entries), and acts until the two match: a
// Runtime API update when only weights or map entries differ, a checked
// hot reload confirmed by the stamp otherwise. HAProxy never sees a config
// that failed validation, and the metrics report what HAProxy said it runs.
package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/weights"
)

// Update is one version of the spec, as a source read it.
type Update struct {
	Data   []byte         // service.yaml content
	Source weights.Source // where it came from, for error messages
	Err    error          // the source could not read the spec (file missing, ConfigMap deleted)
	// Label is the ConfigMap's trackrouter.dev/service label, nil for a
	// file or a ConfigMap without it (the sidecar used without the
	// controller): a spec whose label names another service is one that
	// track-controller ignores, so the sidecar refuses it too.
	Label *string
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
	ConfigPath  string // haproxy.cfg that HAProxy reads
	Render      haproxyconf.Options
	Checker     ConfigChecker
	HAProxy     HAProxy
	Process     Process // HAProxy run by the sidecar (--run-haproxy); nil when it runs elsewhere
	Files       Files   // nil means the real file system
	Metrics     *Metrics
	Log         *slog.Logger
	Rejecter    Rejecter      // optional
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
	// Backoff is the first retry delay after a failed action; it doubles up
	// to 30 times its value. Default 1s (1s to 30s).
	Backoff time.Duration

	mu       sync.Mutex
	latest   *Update
	wake     chan struct{}
	status   atomic.Pointer[status]
	stopping atomic.Bool

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
	invalid    *Update // the last rejected update: a resync of it is not rejected again
	how, why   string  // the last action, logged once HAProxy runs the target
	announced  *target // the target whose "applied" was logged
	since      time.Time
	handled    <-chan struct{} // the Process exit already acted on
}

// target is a rendered spec.
type target struct {
	*haproxyconf.Rendered
	spec *weights.Spec
}

// pending is a reload or start that HAProxy has not confirmed yet.
type pending struct {
	stamp    string
	before   Proc // the master's counters before a reload
	start    bool // a process start, not a reload
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
	now := time.Now()
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
	case r.specStale(time.Now()):
		return errors.New("the API has not confirmed the spec lately: it may have changed")
	default:
		return fmt.Errorf("HAProxy's master socket has not answered for %s", time.Since(st.lastAnswer).Round(time.Second))
	}
}

// Stopping makes Ready false from now on: the sidecar is shutting down.
func (r *Router) Stopping() { r.stopping.Store(true) }

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
	r.lastAnswer = time.Now()
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

// accept makes a valid update the desired state, and rejects an invalid one.
func (r *Router) accept(ctx context.Context, u *Update) {
	t, err := r.prepare(u)
	if err != nil {
		// Evaluated again (what it depends on, a PodTemplate, may have
		// come), but reported once per version of the spec.
		if r.invalid != nil && sameUpdate(u, r.invalid) && sameLabel(u.Label, r.invalid.Label) {
			r.Log.Debug("spec unchanged since it was rejected", "source", u.Source.String())
			return
		}
		r.invalid = u
		r.reject(u.Source, err)
		return
	}
	if r.invalid != nil {
		r.Log.Info("spec valid again", "source", u.Source.String())
	}
	r.invalid = nil
	if d := r.desired; d != nil && bytes.Equal(d.Config, t.Config) && bytes.Equal(d.Map, t.Map) {
		r.Log.Debug("spec unchanged", "source", u.Source.String())
		return
	}
	if t.Stamp != r.refused {
		r.refused = ""
	}
	r.badLoad = ""
	r.desired, r.since = t, time.Now()
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

// target is what HAProxy should run: the desired spec, or the last good one
// while haproxy -c refuses the desired one.
func (r *Router) target() *target {
	if r.desired != nil && r.desired.Stamp == r.refused {
		return r.good
	}
	return r.desired
}

// step is one reconcile pass. It returns when to run the next one.
func (r *Router) step(ctx context.Context) time.Duration {
	now := time.Now()
	t := r.target()
	if r.Process != nil && !r.Process.Running() {
		return r.startProcess(ctx, t, now)
	}
	obs, err := r.HAProxy.Observe(ctx, r.Render.GroupsMap)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		return r.unanswered(now, err)
	}
	if r.outage {
		r.Log.Info("haproxy answers again")
		r.outage = false
	}
	if !r.reachable {
		r.retryAt = now // act at once
	}
	r.reachable, r.lastAnswer, r.loading = true, now, false
	if next, wait := r.checkPending(obs, now); wait {
		r.publish(&obs, t)
		return next
	}
	if t == nil {
		r.publish(&obs, nil)
		return r.pollInterval()
	}
	if obs.Stamp == t.Stamp {
		// HAProxy loaded this structure: it passed HAProxy's own parse.
		r.checked[t.Stamp] = true
	}
	p := plan(obs, t.Rendered)
	filesOK := r.filesHold(t)
	if p.Action == ActNone && filesOK {
		r.synced(t, &obs)
		return r.pollInterval()
	}
	r.publish(&obs, t)
	if now.Before(r.retryAt) {
		return min(r.retryAt.Sub(now), r.pollInterval())
	}
	if r.announced == t {
		// HAProxy drifted from a target it ran (a hand edit on its socket,
		// a restart): log the repair as an apply of its own.
		r.announced, r.since = nil, now
	}
	if !filesOK {
		if err := r.writeFiles(ctx, t); err != nil {
			return r.afterWriteError(err)
		}
	}
	switch p.Action {
	case ActReload:
		r.Log.Info("reloading", "why", p.Why)
		if err := r.HAProxy.Reload(ctx); err != nil {
			return r.failed("reload", err)
		}
		r.pending = &pending{stamp: t.Stamp, before: obs.Proc, sent: now, deadline: now.Add(r.reloadTimeout()), why: p.Why}
		return pendingPoll
	case ActRuntime:
		for _, k := range slices.SortedFunc(maps.Keys(p.Weights), cmpKey) {
			if err := r.HAProxy.SetWeight(ctx, k, p.Weights[k]); err != nil {
				return r.failed("runtime", err)
			}
		}
		if p.Groups != nil {
			if err := r.HAProxy.ReplaceMap(ctx, r.Render.GroupsMap, p.Groups); err != nil {
				return r.failed("runtime", err)
			}
		}
		for _, k := range p.Ready {
			if err := r.HAProxy.SetReady(ctx, k); err != nil {
				return r.failed("runtime", err)
			}
		}
		r.Metrics.RuntimeUpdates.Inc()
		r.how, r.why = "runtime", p.Why
	}
	return time.Millisecond // observe again: what HAProxy reports is what counts
}

// startProcess starts a supervised HAProxy that is not running, once the
// config file holds a checked target.
func (r *Router) startProcess(ctx context.Context, t *target, now time.Time) time.Duration {
	if p := r.pending; p != nil {
		r.pending = nil
		r.badLoad = p.stamp
		alerts := strings.Join(r.Process.Alerts(p.sent), "; ")
		r.Metrics.Reloads.WithLabelValues("failure").Inc()
		return r.failed("start", fmt.Errorf("haproxy exited before it ran config %s: %s", p.stamp, orText(alerts, "see its log")))
	}
	r.publish(nil, t)
	if t == nil {
		t = r.good // the config on disk, with StartFromDisk
	}
	if t == nil {
		return r.pollInterval()
	}
	if now.Before(r.retryAt) {
		return r.retryAt.Sub(now)
	}
	start := t
	if (!r.checked[t.Stamp] || r.badLoad == t.Stamp) && r.good != nil && r.good.Stamp != t.Stamp {
		// The spec's config is not checked yet, or HAProxy failed to load
		// it: start on the last good one, then reload when it is ready.
		start = r.good
	}
	if r.good != nil {
		r.Log.Warn("haproxy is not running; starting it", "config", r.ConfigPath, "stamp", start.Stamp)
	}
	if !r.filesHold(start) {
		if err := r.writeFiles(ctx, start); err != nil {
			return r.afterWriteError(err)
		}
	}
	if err := r.Process.Start(ctx); err != nil {
		return r.failed("start", err)
	}
	r.handled = nil
	r.how, r.why = "start", "haproxy was not running"
	r.pending = &pending{stamp: start.Stamp, start: true, sent: now, deadline: now.Add(r.reloadTimeout())}
	r.lastAnswer, r.reachable = now, true
	return pendingPoll
}

// fromDisk is the config file on disk as a target, when it is one the
// sidecar wrote (it carries a stamp); nil otherwise.
func (r *Router) fromDisk() *target {
	b, err := r.Files.ReadFile(r.ConfigPath)
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "description "+haproxyconf.StampPrefix); ok {
			return &target{Rendered: &haproxyconf.Rendered{Config: b, Stamp: haproxyconf.StampPrefix + v}}
		}
	}
	return nil
}

// service names a target's service for the log.
func (t *target) service() string {
	if t.spec == nil {
		return "(the config on disk)"
	}
	return t.spec.Service
}

// afterWriteError is when to step again after writeFiles failed.
func (r *Router) afterWriteError(err error) time.Duration {
	if errors.Is(err, errChecking) {
		return r.pollInterval() // the verdict wakes the loop
	}
	return time.Millisecond // backing off: the next step waits for retryAt
}

// unanswered handles an observation that failed: HAProxy is frozen, its
// socket gone, or it is busy loading a config.
func (r *Router) unanswered(now time.Time, err error) time.Duration {
	if r.reachable {
		r.reachable = false
		if r.pending == nil {
			r.outage = true
			r.Metrics.ApplyErrors.WithLabelValues("unreachable").Inc()
			r.Log.Warn("haproxy does not answer; retrying", "err", err)
		}
	}
	if p := r.pending; p != nil && !now.Before(p.deadline) {
		r.pending = nil
		reason := "reload"
		if p.start {
			reason = "start"
		}
		r.failed(reason, fmt.Errorf("HAProxy does not answer %s after it was asked to load %s: %w", now.Sub(p.sent).Round(time.Second), p.stamp, err))
	}
	// A master that re-executes to load a config refuses connections; a
	// frozen one accepts them and never answers.
	r.loading = r.pending != nil && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT))
	if r.Process != nil && r.pending == nil && errors.Is(err, syscall.ENOENT) && now.Sub(r.reexecAt) > r.unresponsiveAfter() {
		// The socket file is gone (a wiped directory): a reload makes the
		// master create it again, without touching the workers.
		r.reexecAt = now
		r.Log.Warn("master socket gone; asking HAProxy to create it again (SIGUSR2)", "socket", err)
		if rerr := r.Process.Reexec(); rerr != nil {
			r.Log.Error("SIGUSR2 haproxy", "err", rerr)
		}
	}
	silent := now.Sub(r.lastAnswer)
	if r.Process != nil && !r.loading && silent > r.restartAfter() {
		r.Log.Error("haproxy has not answered; killing it to start it again", "silent", silent.Round(time.Millisecond).String(), "err", err)
		r.Metrics.ApplyErrors.WithLabelValues("restart").Inc()
		r.pending = nil
		r.Process.Kill()
		return 0
	}
	r.publish(nil, r.target())
	if r.pending != nil || now.Sub(r.reexecAt) < 5*time.Second {
		return pendingPoll // a load in progress, or a socket being created again
	}
	return r.pollInterval()
}

// checkPending confirms or fails a reload or start in progress by what
// HAProxy reports. wait is true while it is still in progress.
func (r *Router) checkPending(obs Observed, now time.Time) (next time.Duration, wait bool) {
	p := r.pending
	if p == nil {
		return 0, false
	}
	switch {
	case obs.Stamp == p.stamp && len(obs.Proc.Workers) > 0:
		r.pending = nil
		if r.badLoad == p.stamp {
			r.badLoad = ""
		}
		r.Metrics.Reloads.WithLabelValues("success").Inc()
		if !p.start {
			r.how, r.why = "reload", p.why
		}
		r.Log.Debug("haproxy runs the new config", "stamp", p.stamp, "took", now.Sub(p.sent).Round(time.Millisecond).String())
		return 0, false
	case !p.start && obs.Proc.FailedReloads > p.before.FailedReloads:
		r.pending = nil
		r.badLoad = p.stamp
		r.Metrics.Reloads.WithLabelValues("failure").Inc()
		if r.good != nil && obs.Stamp == r.good.Stamp && !r.filesHold(r.good) {
			// The file goes back to what HAProxy runs, so that a restart
			// meanwhile starts on it; the retry writes the spec's again.
			r.write(r.good)
		}
		alerts := ""
		if r.Process != nil {
			alerts = strings.Join(r.Process.Alerts(p.sent), "; ")
		}
		return r.failed("reload", fmt.Errorf("%w: HAProxy kept %s: %s", ErrReloadFailed, orNone(obs.Stamp), orText(alerts, "see its log"))), true
	case now.Before(p.deadline):
		return pendingPoll, true
	default:
		r.pending = nil
		return r.failed("reload", fmt.Errorf("HAProxy still runs %s %s after it was asked to load %s", orNone(obs.Stamp), now.Sub(p.sent).Round(time.Second), p.stamp)), true
	}
}

// failed counts and logs an operational failure and backs off.
func (r *Router) failed(reason string, err error) time.Duration {
	r.Metrics.ApplyErrors.WithLabelValues(reason).Inc()
	base := orDefault(r.Backoff, time.Second)
	r.backoff = min(max(2*r.backoff, base), 30*base)
	r.retryAt = time.Now().Add(r.backoff)
	r.Log.Error("apply failed; "+r.stays(), "reason", reason, "retry_in", r.backoff.String(), "err", err)
	r.Metrics.InSync.Set(0)
	return r.backoff
}

// synced records that HAProxy runs t in full.
func (r *Router) synced(t *target, obs *Observed) {
	r.good = t
	r.checked[t.Stamp] = true
	r.backoff, r.retryAt = 0, time.Time{}
	r.publish(obs, t)
	if r.announced == t {
		return
	}
	r.announced = t
	if t != r.desired {
		r.Log.Warn("haproxy runs the last good config", "service", t.service(), "stamp", t.Stamp)
		return
	}
	r.Log.Info("applied", "service", t.service(), "how", r.how, "why", r.why, "stamp", t.Stamp,
		"duration", time.Since(r.since).Round(time.Microsecond).String())
}

// publish updates the metrics and readiness from an observation (nil when
// HAProxy did not answer).
func (r *Router) publish(obs *Observed, t *target) {
	st := &status{}
	if old := r.status.Load(); old != nil {
		*st = *old
	}
	st.lastAnswer = r.lastAnswer
	st.pendingEnd = time.Time{}
	if r.pending != nil && !r.pending.start && r.loading {
		st.pendingEnd = r.pending.deadline
	}
	inSync := false
	if obs != nil {
		r.Metrics.setWeights(obs.Weights)
		st.serving = r.good != nil && obs.Stamp == r.good.Stamp || t != nil && obs.Stamp == t.Stamp && len(obs.Proc.Workers) > 0
		if r.good != nil && obs.Stamp == r.good.Stamp {
			st.applied = r.good.Config
		}
		inSync = t != nil && t == r.desired && plan(*obs, t.Rendered).Action == ActNone && r.filesHold(t)
	} else {
		// What HAProxy runs is unknown: no weights are reported.
		r.Metrics.setWeights(nil)
		if r.Process != nil && !r.Process.Running() {
			st.serving = false
		}
	}
	if inSync {
		r.Metrics.InSync.Set(1)
	} else {
		r.Metrics.InSync.Set(0)
	}
	r.status.Store(st)
}

// filesHold reports whether haproxy.cfg (and the map) on disk are t's.
func (r *Router) filesHold(t *target) bool {
	if b, err := r.Files.ReadFile(r.ConfigPath); err != nil || !bytes.Equal(b, t.Config) {
		return false
	}
	if t.Map != nil {
		if b, err := r.Files.ReadFile(r.Render.GroupsMap); err != nil || !bytes.Equal(b, t.Map) {
			return false
		}
	}
	return true
}

// errChecking says haproxy -c runs on the target in the background: the
// loop goes on observing (and restarting HAProxy) until its verdict.
var errChecking = errors.New("haproxy -c in progress")

// checkResult is the verdict of a background haproxy -c.
type checkResult struct {
	t   *target
	err error
}

// writeFiles writes the map and the config of t, once haproxy -c accepted
// its stamp. The check runs in the background (name resolution can make it
// slow): until its verdict writeFiles returns errChecking.
func (r *Router) writeFiles(ctx context.Context, t *target) error {
	if !r.checked[t.Stamp] {
		if r.checking == nil {
			r.checking = t
			ctx, cancel := context.WithTimeout(ctx, r.reloadTimeout())
			go func() {
				defer cancel()
				r.checkDone <- checkResult{t, r.check(ctx, t)}
			}()
		}
		return errChecking
	}
	return r.write(t)
}

// write puts t's map and config in place.
func (r *Router) write(t *target) error {
	if t.Map != nil {
		if err := r.Files.WriteFile(r.Render.GroupsMap, t.Map); err != nil {
			r.failed("write", err)
			return err
		}
	}
	if err := r.Files.WriteFile(r.ConfigPath, t.Config); err != nil {
		r.failed("write", err)
		return err
	}
	return nil
}

// checked records the verdict of a background haproxy -c. Only HAProxy's
// verdict refuses a config; a check that could not run is retried.
func (r *Router) checkedResult(res checkResult) {
	r.checking = nil
	var ce *haproxyconf.CheckError
	switch {
	case errors.As(res.err, &ce):
		r.refused = res.t.Stamp
		r.reject(res.t.spec.Source, fmt.Errorf("haproxy -c: %w", res.err))
	case res.err != nil:
		r.failed("check", fmt.Errorf("haproxy -c could not run: %w", res.err))
	default:
		r.checked[res.t.Stamp] = true
	}
}

// prepare parses, validates and renders one update.
func (r *Router) prepare(u *Update) (*target, error) {
	if u.Err != nil {
		return nil, u.Err
	}
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
	return &target{Rendered: rendered, spec: spec}, nil
}

func (r *Router) reject(src weights.Source, err error) {
	r.Metrics.Rejected.Inc()
	r.Log.Error("spec rejected; "+r.stays(), "source", src.String(), "err", err.Error())
	if r.Rejecter != nil {
		r.Rejecter.Rejected(src, err)
	}
}

// stays says what HAProxy serves after a failure.
func (r *Router) stays() string {
	if r.good == nil {
		return "no config applied yet: not ready until one is"
	}
	return "HAProxy keeps serving the last good config"
}

// check runs haproxy -c on t. In map mode the config names the groups
// map's final path, which must not change before the check passes: the
// check runs on a copy rendered against a temporary map file.
func (r *Router) check(ctx context.Context, t *target) error {
	if t.Map == nil {
		return r.Checker.Check(ctx, t.Config)
	}
	tmp, err := os.CreateTemp(filepath.Dir(r.Render.GroupsMap), ".groups.map-check-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(t.Map)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	opt := r.Render
	opt.GroupsMap = tmp.Name()
	checkCfg, err := haproxyconf.Render(t.spec, opt)
	if err != nil {
		return err
	}
	return r.Checker.Check(ctx, checkCfg.Config)
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// osFiles is the real file system.
type osFiles struct{}

func (osFiles) ReadFile(path string) ([]byte, error)     { return os.ReadFile(path) }
func (osFiles) WriteFile(path string, data []byte) error { return writeAtomic(path, data) }

// writeAtomic writes data to a temporary file in the same directory and
// renames it over path, so HAProxy never reads a half-written file.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".haproxy.cfg-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
