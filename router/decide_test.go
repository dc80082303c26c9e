package router

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/router/haproxy"
)

// Table tests of the loop's decisions (decide.go): no HAProxy, no sleep.

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func TestNextBackoff(t *testing.T) {
	var got []time.Duration
	b := time.Duration(0)
	for range 7 {
		b = nextBackoff(b, time.Second)
		got = append(got, b)
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff from 1s (-want +got):\n%s", diff)
	}
}

func TestJudgeLoad(t *testing.T) {
	reload := &pending{stamp: "trackrouter:new", before: haproxy.Proc{FailedReloads: 2}, sent: t0, deadline: t0.Add(2 * time.Minute)}
	start := &pending{stamp: "trackrouter:new", start: true, sent: t0, deadline: t0.Add(2 * time.Minute)}
	running := func(stamp string, failed int) haproxy.Observed {
		return haproxy.Observed{Stamp: stamp, Proc: haproxy.Proc{FailedReloads: failed, Workers: []int{42}}}
	}
	for _, tc := range []struct {
		name string
		p    *pending
		obs  haproxy.Observed
		at   time.Duration
		want loadVerdict
	}{
		{"the new stamp with a worker", reload, running("trackrouter:new", 2), time.Second, loadConfirmed},
		{"the new stamp, no worker yet", reload, haproxy.Observed{Stamp: "trackrouter:new", Proc: haproxy.Proc{FailedReloads: 2}}, time.Second, loadWaiting},
		{"the master counted a failed reload", reload, running("trackrouter:old", 3), time.Second, loadFailed},
		{"a start has no reload counter to fail", start, running("trackrouter:old", 3), time.Second, loadWaiting},
		{"a slow load within its deadline", reload, running("trackrouter:old", 2), 119 * time.Second, loadWaiting},
		{"past its deadline", reload, running("trackrouter:old", 2), 2 * time.Minute, loadTimedOut},
		{"confirmed even late", reload, running("trackrouter:new", 2), time.Hour, loadConfirmed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := judgeLoad(tc.p, tc.obs, t0.Add(tc.at)); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestJudgeSilence(t *testing.T) {
	reload := &pending{stamp: "s", sent: t0, deadline: t0.Add(10 * time.Second)}
	refused := fmt.Errorf("%w: %w", haproxy.ErrUnavailable, syscall.ECONNREFUSED)
	gone := fmt.Errorf("%w: %w", haproxy.ErrUnavailable, syscall.ENOENT)
	timeout := errors.New("read unix: i/o timeout")
	base := silenceInput{supervised: true, lastAnswer: t0, reexecAt: t0.Add(-time.Hour), unresponsive: 10 * time.Second, restart: 30 * time.Second}
	with := func(f func(*silenceInput)) silenceInput { in := base; f(&in); return in }
	for _, tc := range []struct {
		name string
		in   silenceInput
		at   time.Duration
		want silence
	}{
		{"a short silence at rest", with(func(in *silenceInput) { in.err = timeout }), 5 * time.Second, silence{}},
		{"the master re-executes for a reload", with(func(in *silenceInput) { in.err, in.pending = refused, reload }), 5 * time.Second, silence{loading: true}},
		{"its socket is briefly gone during the reload", with(func(in *silenceInput) { in.err, in.pending = gone, reload }), 5 * time.Second, silence{loading: true}},
		{"frozen during a reload: not loading", with(func(in *silenceInput) { in.err, in.pending = timeout, reload }), 5 * time.Second, silence{}},
		{"the reload's deadline passed", with(func(in *silenceInput) { in.err, in.pending = refused, reload }), 10 * time.Second, silence{giveUp: true}},
		{"socket gone at rest: SIGUSR2", with(func(in *silenceInput) { in.err = gone }), 11 * time.Second, silence{reexec: true}},
		{"socket gone, SIGUSR2 sent lately", with(func(in *silenceInput) { in.err, in.reexecAt = gone, t0.Add(5*time.Second) }), 11 * time.Second, silence{}},
		{"silent past RestartAfter: restart", with(func(in *silenceInput) { in.err = timeout }), 31 * time.Second, silence{restart: true}},
		{"silent past RestartAfter but loading: wait", with(func(in *silenceInput) {
			in.err, in.pending = refused, &pending{stamp: "s", sent: t0, deadline: t0.Add(time.Minute)}
		}), 31 * time.Second, silence{loading: true}},
		{"not supervised: never restarted nor signalled", with(func(in *silenceInput) { in.err, in.supervised = gone, false }), time.Hour, silence{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, judgeSilence(tc.in, t0.Add(tc.at)), cmp.AllowUnexported(silence{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestStartConfigAndTarget(t *testing.T) {
	rendered := func(stamp string) *target { return &target{Rendered: &haproxyconf.Rendered{Stamp: stamp}} }
	good, next := rendered("good"), rendered("next")
	checked := map[string]bool{"good": true, "next": true}
	for _, tc := range []struct {
		name          string
		t, good       *target
		checked       map[string]bool
		badLoad, want string
	}{
		{"nothing yet", nil, nil, nil, "", ""},
		{"the config on disk, no spec yet", nil, good, checked, "", "good"},
		{"the checked target", next, good, checked, "", "next"},
		{"the target before its check: the last good one", next, good, map[string]bool{"good": true}, "", "good"},
		{"a target HAProxy failed to load: the last good one", next, good, checked, "next", "good"},
		{"the first target, unchecked, nothing better", next, nil, nil, "", "next"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if s := startConfig(tc.t, tc.good, tc.checked, tc.badLoad); s != nil {
				got = s.Stamp
			}
			if got != tc.want {
				t.Errorf("starts on %q, want %q", got, tc.want)
			}
		})
	}
	if targetOf(next, good, "next") != good || targetOf(next, good, "") != next || targetOf(next, good, "other") != next {
		t.Error("a refused desired stamp must leave the last good config as the target, and only then")
	}
}
