package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/router/haproxy"
	"github.com/trackrouter/trackrouter/weights"
)

// step is one reconcile pass. It returns when to run the next one.
func (r *Router) step(ctx context.Context) time.Duration {
	now := r.now()
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
	r.reachable, r.lastAnswer, r.loading, r.startedOnce = true, now, false, true
	if next, wait := r.checkPending(obs, now); wait {
		r.publish(&obs, t, false)
		return next
	}
	if t == nil {
		r.publish(&obs, nil, false)
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
	r.publish(&obs, t, false)
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
		return r.reload(ctx, t, obs, p, now)
	case ActRuntime:
		if err := r.runtime(ctx, p); err != nil {
			return r.failed("runtime", err)
		}
		if len(p.Ready) == 0 {
			// HAProxy read back each weight (get weight) and the map
			// (show map): its own answers confirm the change, and the
			// files hold it for a worker that starts meanwhile.
			r.synced(t, confirmed(obs, p))
			return r.pollInterval()
		}
	}
	return time.Millisecond // observe again: what HAProxy reports is what counts
}

// confirmed is obs after a runtime plan that HAProxy confirmed in full.
func confirmed(obs haproxy.Observed, p Plan) *haproxy.Observed {
	o := obs
	o.Weights = maps.Clone(obs.Weights)
	maps.Copy(o.Weights, p.Weights)
	if p.Groups != nil {
		o.Groups = maps.Clone(p.Groups)
	}
	return &o
}

// reload asks HAProxy to load t; the next steps confirm it by its stamp.
func (r *Router) reload(ctx context.Context, t *target, obs haproxy.Observed, p Plan, now time.Time) time.Duration {
	if why := specWhy(r.good, t); why != "" {
		p.Why = why
	}
	r.Log.Info("reloading", "why", p.Why)
	if err := r.HAProxy.Reload(ctx); err != nil {
		return r.failed("reload", err)
	}
	r.pending = &pending{stamp: t.Stamp, before: obs.Proc, sent: now, deadline: now.Add(r.reloadTimeout()), why: p.Why}
	return pendingPoll
}

// runtime applies a plan's weights, map and readiness through the Runtime
// API; the next step reads back whether HAProxy runs them.
func (r *Router) runtime(ctx context.Context, p Plan) error {
	for _, k := range slices.SortedFunc(maps.Keys(p.Weights), cmpKey) {
		if err := r.HAProxy.SetWeight(ctx, k, p.Weights[k]); err != nil {
			return err
		}
	}
	if p.Groups != nil {
		if err := r.HAProxy.ReplaceMap(ctx, r.Render.GroupsMap, p.Groups); err != nil {
			return err
		}
	}
	for _, k := range p.Ready {
		if err := r.HAProxy.SetReady(ctx, k); err != nil {
			return err
		}
	}
	r.Metrics.RuntimeUpdates.Inc()
	r.how, r.why = "runtime", p.Why
	return nil
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
	r.publish(nil, t, false)
	start := startConfig(t, r.good, r.checked, r.badLoad)
	if start == nil {
		return r.pollInterval()
	}
	if now.Before(r.retryAt) {
		return r.retryAt.Sub(now)
	}
	if r.startedOnce {
		// It ran, and stopped without being asked: say so. The first
		// start of a sidecar (a config kept on disk or not) is normal.
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
	r.startedOnce = true
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
	if stamp := stampOf(b); stamp != "" {
		return &target{Rendered: &haproxyconf.Rendered{Config: b, Stamp: stamp}}
	}
	return nil
}

// stampOf is the stamp a config file carries, "" when none.
func stampOf(cfg []byte) string {
	for _, line := range strings.Split(string(cfg), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "description "+haproxyconf.StampPrefix); ok {
			return haproxyconf.StampPrefix + v
		}
	}
	return ""
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
			r.Log.Warn("haproxy does not answer; retrying", "err", err)
			r.Metrics.ApplyErrors.WithLabelValues("unreachable").Inc()
		}
	}
	s := judgeSilence(silenceInput{pending: r.pending, err: err, supervised: r.Process != nil, lastAnswer: r.lastAnswer,
		reexecAt: r.reexecAt, unresponsive: r.unresponsiveAfter(), restart: r.restartAfter()}, now)
	if s.giveUp {
		p := r.pending
		r.pending = nil
		reason := "reload"
		if p.start {
			reason = "start"
		}
		r.failed(reason, fmt.Errorf("HAProxy does not answer %s after it was asked to load %s: %w", now.Sub(p.sent).Round(time.Second), p.stamp, err))
	}
	r.loading = s.loading
	if s.reexec {
		// The socket file is gone (a wiped directory): a reload makes the
		// master create it again, without touching the workers.
		r.reexecAt = now
		r.Log.Warn("master socket gone; asking HAProxy to create it again (SIGUSR2)", "socket", err)
		if rerr := r.Process.Reexec(); rerr != nil {
			r.Log.Error("SIGUSR2 haproxy", "err", rerr)
		}
	}
	if s.restart {
		r.Log.Error("haproxy has not answered; killing it to start it again", "silent", now.Sub(r.lastAnswer).Round(time.Millisecond).String(), "err", err)
		r.Metrics.ApplyErrors.WithLabelValues("restart").Inc()
		r.pending = nil
		r.Process.Kill()
		return 0
	}
	r.publish(nil, r.target(), false)
	if r.pending != nil || now.Sub(r.reexecAt) < 5*time.Second {
		return pendingPoll // a load in progress, or a socket being created again
	}
	return r.pollInterval()
}

// checkPending confirms or fails a reload or start in progress by what
// HAProxy reports. wait is true while it is still in progress.
func (r *Router) checkPending(obs haproxy.Observed, now time.Time) (next time.Duration, wait bool) {
	p := r.pending
	if p == nil {
		return 0, false
	}
	switch judgeLoad(p, obs, now) {
	case loadConfirmed:
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
	case loadFailed:
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
		return r.failed("reload", fmt.Errorf("%w: HAProxy kept %s: %s", haproxy.ErrReloadFailed, orNone(obs.Stamp), orText(alerts, "see its log"))), true
	case loadWaiting:
		return pendingPoll, true
	default:
		r.pending = nil
		return r.failed("reload", fmt.Errorf("HAProxy still runs %s %s after it was asked to load %s", orNone(obs.Stamp), now.Sub(p.sent).Round(time.Second), p.stamp)), true
	}
}

// failed counts and logs an operational failure and backs off: the action
// waits for retryAt, but HAProxy is still observed every poll meanwhile. A
// loop that slept through a 30 s backoff saw nothing of HAProxy for 30 s,
// and /readyz failed after UnresponsiveAfter (10 s) while HAProxy served
// the last good config: every pod of a tier at once, on one bad reload.
func (r *Router) failed(reason string, err error) time.Duration {
	r.backoff = nextBackoff(r.backoff, orDefault(r.Backoff, time.Second))
	r.retryAt = r.now().Add(r.backoff)
	r.Log.Error("apply failed; "+r.stays(), "reason", reason, "retry_in", r.backoff.String(), "err", err)
	r.Metrics.ApplyErrors.WithLabelValues(reason).Inc() // after the log: whoever sees the count finds why
	r.Metrics.InSync.Set(0)
	return min(r.backoff, r.pollInterval())
}

// synced records that HAProxy runs t in full.
func (r *Router) synced(t *target, obs *haproxy.Observed) {
	r.good = t
	r.checked[t.Stamp] = true
	r.backoff, r.retryAt = 0, time.Time{}
	r.publish(obs, t, t == r.desired)
	if r.announced == t {
		return
	}
	r.announced = t
	if t != r.desired {
		r.Log.Warn("haproxy runs the last good config", "service", t.service(), "stamp", t.Stamp)
		return
	}
	r.lastApplied.Store(&Applied{How: r.how, Why: r.why, Stamp: t.Stamp})
	r.Log.Info("applied", "service", t.service(), "how", r.how, "why", r.why, "stamp", t.Stamp,
		"duration", r.now().Sub(r.since).Round(time.Microsecond).String())
}

// publish updates the metrics and readiness from an observation (nil when
// HAProxy did not answer). inSync is the caller's verdict: HAProxy and the
// files hold the latest valid spec (only synced says so).
func (r *Router) publish(obs *haproxy.Observed, t *target, inSync bool) {
	st := &status{}
	if old := r.status.Load(); old != nil {
		*st = *old
	}
	st.lastAnswer = r.lastAnswer
	st.pendingEnd = time.Time{}
	if r.pending != nil && !r.pending.start && r.loading {
		st.pendingEnd = r.pending.deadline
	}
	if obs != nil {
		r.Metrics.setWeights(obs.Weights, obs.Down)
		st.serving = r.good != nil && obs.Stamp == r.good.Stamp || t != nil && obs.Stamp == t.Stamp && len(obs.Proc.Workers) > 0
		if r.good != nil && obs.Stamp == r.good.Stamp {
			st.applied = r.good.Config
		}
	} else {
		// What HAProxy runs is unknown: no weights are reported.
		r.Metrics.setWeights(nil, nil)
		if r.Process != nil && !r.Process.Running() {
			st.serving = false
		}
	}
	unreadable := r.unreadableLong(r.now())
	if unreadable != nil {
		r.Metrics.Unreadable.Set(1)
	} else {
		r.Metrics.Unreadable.Set(0)
	}
	if inSync {
		r.Metrics.InSync.Set(1)
	} else {
		r.Metrics.InSync.Set(0)
	}
	r.status.Store(st)
	if r.Reporter != nil {
		r.report(obs, t, inSync, unreadable)
	}
}

// report tells the Reporter what HAProxy runs, as observed, when that
// changed since the last report.
func (r *Router) report(obs *haproxy.Observed, t *target, inSync bool, unreadable *contract.Unreadable) {
	rep := &contract.Report{HAProxy: "unreachable", InSync: inSync, Rejected: r.rejection, Unreadable: unreadable, Samples: r.SamplesURL}
	if obs != nil {
		rep.HAProxy = "running"
		rep.Stamp = obs.Stamp
		switch {
		case inSync && t != nil:
			rep.ResourceVersion = t.version
		case r.good != nil && obs.Stamp == r.good.Stamp:
			// The last good spec, perhaps with some weights of the
			// next one: the live weights say which.
			rep.ResourceVersion = r.good.version
		}
		for k, w := range obs.Weights {
			if rep.Weights == nil {
				rep.Weights = make(map[string]map[string]int)
			}
			if rep.Weights[k.Backend] == nil {
				rep.Weights[k.Backend] = make(map[string]int)
			}
			rep.Weights[k.Backend][k.Server] = w
		}
		for k, why := range obs.Down {
			if rep.Down == nil {
				rep.Down = make(map[string]map[string]string)
			}
			if rep.Down[k.Backend] == nil {
				rep.Down[k.Backend] = make(map[string]string)
			}
			rep.Down[k.Backend][k.Server] = why
		}
	}
	if rep.Same(r.reported) {
		return
	}
	rep.Since = r.now().UTC().Truncate(time.Second)
	r.reported = rep
	cp := *rep
	r.Reporter.Report(&cp)
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

// specWhy says in the spec's words what changed from the config HAProxy
// ran last to t: "groups.BETA none->canary, ...".
func specWhy(from, to *target) string {
	if from == nil || from.spec == nil || to.spec == nil {
		return ""
	}
	return strings.Join(weights.ChangeWords(from.spec, to.spec), ", ")
}
