package router

import (
	"errors"
	"syscall"
	"time"

	"github.com/trackrouter/trackrouter/router/haproxy"
)

// The decisions of the reconcile loop, as pure functions of what the loop
// knows and the time: the loop (reconcile.go) observes, asks these, and
// acts. Each has a table test that runs in microseconds, with no HAProxy
// and no sleep.

// nextBackoff is the delay before retrying a failed action: base at first,
// doubling up to 30 times base.
func nextBackoff(prev, base time.Duration) time.Duration {
	return min(max(2*prev, base), 30*base)
}

// loadVerdict is what HAProxy's report says of a reload or start in
// progress.
type loadVerdict int

const (
	loadWaiting   loadVerdict = iota // not seen yet, within its deadline
	loadConfirmed                    // HAProxy runs its stamp, with workers
	loadFailed                       // the master counted a failed reload
	loadTimedOut                     // its deadline passed without either
)

// judgeLoad judges a reload or start in progress by what HAProxy reports,
// never by a timer alone: a slow load (DNS at load time) is waited for until
// its deadline.
func judgeLoad(p *pending, obs haproxy.Observed, now time.Time) loadVerdict {
	switch {
	case obs.Stamp == p.stamp && len(obs.Proc.Workers) > 0:
		return loadConfirmed
	case !p.start && obs.Proc.FailedReloads > p.before.FailedReloads:
		return loadFailed
	case now.Before(p.deadline):
		return loadWaiting
	default:
		return loadTimedOut
	}
}

// silence is what to do when HAProxy's master socket does not answer.
type silence struct {
	giveUp  bool // the reload or start in progress passed its deadline: fail it
	loading bool // a reload is in progress and the master re-executes: wait
	reexec  bool // the socket file is gone: SIGUSR2 makes the master create it
	restart bool // silent past RestartAfter and not loading: kill and start again
}

// silenceInput is what judgeSilence decides on.
type silenceInput struct {
	pending      *pending
	err          error     // why Observe failed
	supervised   bool      // the sidecar runs HAProxy (--run-haproxy)
	lastAnswer   time.Time // of the master socket
	reexecAt     time.Time // the last SIGUSR2 for a gone socket
	unresponsive time.Duration
	restart      time.Duration
}

// judgeSilence decides on a failed observation. A master that re-executes
// to load a config refuses connections (or its socket is briefly gone); a
// frozen one accepts them and never answers: only the first is loading.
func judgeSilence(in silenceInput, now time.Time) silence {
	var s silence
	p := in.pending
	if p != nil && !now.Before(p.deadline) {
		s.giveUp, p = true, nil
	}
	gone := errors.Is(in.err, syscall.ENOENT)
	s.loading = p != nil && (errors.Is(in.err, syscall.ECONNREFUSED) || gone)
	s.reexec = in.supervised && p == nil && gone && now.Sub(in.reexecAt) > in.unresponsive
	s.restart = in.supervised && !s.loading && now.Sub(in.lastAnswer) > in.restart
	return s
}

// startConfig is the config a stopped HAProxy starts on: the target once
// haproxy -c passed it and HAProxy did not fail to load it, else the last
// good one (then a reload brings the target once it is ready); nil when
// there is neither.
func startConfig(t, good *target, checked map[string]bool, badLoad string) *target {
	if t == nil {
		t = good // the config on disk, with StartFromDisk
	}
	if t == nil {
		return nil
	}
	if (!checked[t.Stamp] || badLoad == t.Stamp) && good != nil && good.Stamp != t.Stamp {
		return good
	}
	return t
}

// targetOf is what HAProxy should run: the desired spec, or the last good
// one while haproxy -c refuses the desired one.
func targetOf(desired, good *target, refused string) *target {
	if desired != nil && desired.Stamp == refused {
		return good
	}
	return desired
}
