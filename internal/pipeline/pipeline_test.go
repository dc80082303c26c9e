package pipeline

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/release"
	"github.com/trackrouter/trackrouter/weights"
)

const specText = `service: web
port: 80
tracks:
  internal:
    version: "1.0"
    gates:
      - job:
          apiVersion: batch/v1
          kind: Job
          spec:
            template:
              spec:
                restartPolicy: Never
                containers: [{name: t, image: tests}]
      - approval
  canary:
    version: "1.0"
    analysis: {bake: 10m}
  paid:
    version: "1.0"
    analysis: {bake: 20m}
  production: {version: "1.0"}
groups: {INTERNAL: internal, FREE: free, PAID: paid}
default: all
backends:
  internal: {internal: 100}
  free: {canary: 5, production: 95}
  paid: {paid: 10, production: 90}
  all: {production: 100}
`

// rig walks a release: it keeps the spec's text and the state, applies
// each decision's edits to the text as the controller would, and checks
// what each step decided.
type rig struct {
	t    *testing.T
	text string
	st   State
	now  time.Time
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, text: specText, now: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	if d := r.step(Observed{}); d != nil {
		t.Fatalf("the first look decided %+v", d)
	}
	if r.st.Phase != Idle {
		t.Fatalf("phase %s after the first look, want idle", r.st.Phase)
	}
	return r
}

func (r *rig) spec() *weights.Spec {
	r.t.Helper()
	s, err := weights.ParseService(weights.Source{File: "web.yaml"}, []byte(r.text))
	if err != nil {
		r.t.Fatal(err)
	}
	return s
}

// edit changes the spec by hand (trackctl deploy, a person's edit).
func (r *rig) edit(edits ...release.Edit) {
	r.t.Helper()
	out, err := release.EditText([]byte(r.text), []byte(r.text), 0, 0, edits)
	if err != nil {
		r.t.Fatal(err)
	}
	r.text = string(out)
}

// step runs one step a minute after the last, writes its edits and keeps
// its state.
func (r *rig) step(obs Observed) *Decision {
	r.t.Helper()
	r.now = r.now.Add(time.Minute)
	obs.Now = r.now
	st, d := Step(r.st, r.spec(), obs)
	if d != nil && len(d.Edits) > 0 {
		r.edit(d.Edits...)
	}
	r.st = st
	return d
}

// want checks a decision's kind, the phase and stage after it, and that
// its reason holds every one of words.
func (r *rig) want(d *Decision, kind Kind, phase Phase, stage string, words ...string) {
	r.t.Helper()
	if d == nil {
		r.t.Fatalf("no decision, want %s (phase %s, stage %s)", kind, r.st.Phase, r.st.Stage)
	}
	if d.Kind != kind || r.st.Phase != phase || r.st.Stage != stage {
		r.t.Fatalf("decision %s, phase %s, stage %s; want %s, %s, %s (reason: %s)", d.Kind, r.st.Phase, r.st.Stage, kind, phase, stage, d.Reason)
	}
	for _, w := range words {
		if !strings.Contains(d.Reason, w) {
			r.t.Errorf("reason %q does not say %q", d.Reason, w)
		}
	}
}

func (r *rig) none(obs Observed) {
	r.t.Helper()
	if d := r.step(obs); d != nil {
		r.t.Fatalf("decided %s (%s), want nothing", d.Kind, d.Reason)
	}
}

func version(track, v string) release.Edit {
	return release.Edit{Path: []string{"tracks", track, "version"}, Value: v}
}

func verdict(a analysis.Action, why string) Observed {
	return Observed{Verdict: &analysis.Verdict{Action: a, Reason: why}}
}

// walkToCanary deploys v and passes internal's gates.
func (r *rig) walkToCanary(v string) {
	r.t.Helper()
	r.edit(version("internal", v))
	// An approval of v written before the release began (a pre-approval,
	// with a time to come) is not this release's.
	early := Observed{Approvals: map[string]string{"internal": v + " by mallory at 2099-01-01T00:00:00Z"}}
	r.want(r.step(early), Start, Gates, "internal", v+" deployed on internal")
	job := r.st.JobName("web", "internal", 0)
	d := r.step(Observed{})
	r.want(d, RunJob, Gates, "internal", job)
	if d.Job == nil || d.Job.Name != job {
		r.t.Fatalf("job %+v, want %s", d.Job, job)
	}
	r.none(Observed{Jobs: map[string]JobStatus{job: JobRunning}})
	r.want(r.step(Observed{Jobs: map[string]JobStatus{job: JobSucceeded}}), Pass, Gates, "internal", "Job "+job+" succeeded")
	r.none(Observed{Approvals: map[string]string{"internal": "0.9 by bob"}}) // another version's approval
	r.none(early)                                                            // said before this release
	r.want(r.step(Observed{Approvals: map[string]string{"internal": v + " by alice at " + r.now.Format(time.RFC3339)}}), Pass, Gates, "internal", "approved by alice")
	d = r.step(Observed{})
	r.want(d, Promote, Baking, "canary", "promoted from internal to canary")
	if got := r.spec().Tracks["canary"].Version; got != v {
		r.t.Fatalf("canary runs %s, want %s", got, v)
	}
}

// TestWalkToProduction: a healthy build walks every stage, by gates and
// bakes, with nobody acting but the approver.
func TestWalkToProduction(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	r.none(verdict(analysis.Wait, "baking"))
	r.none(Observed{}) // not judged at this step
	r.want(r.step(verdict(analysis.Promote, "no breach in 10m")), Promote, Baking, "paid", "no breach in 10m")
	r.want(r.step(verdict(analysis.Promote, "no breach in 20m")), Finish, Done, "production", "the release is done")
	s := r.spec()
	for _, tr := range s.Stages {
		if s.Tracks[tr].Version != "1.1" {
			t.Errorf("%s runs %s, want 1.1", tr, s.Tracks[tr].Version)
		}
	}
	r.none(verdict(analysis.Rollback, "late")) // done: nothing moves
	if n := len(r.st.Decisions); n != 7 {      // start, job, 2 gates passed, 3 promotions
		t.Errorf("%d decisions recorded, want 7", n)
	}
}

// TestRollbackAndBack: a breach on paid sets its weights to 0 and its
// version back; the next build to reach paid puts the weights back.
func TestRollbackAndBack(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	r.step(verdict(analysis.Promote, "ok"))
	d := r.step(verdict(analysis.Rollback, "canary 5xx 4.8% (29/604) vs production 0.1%"))
	r.want(d, Rollback, RolledBack, "paid", "1.1 rolled back on paid", "4.8% (29/604)", "weights to 0, its version back to 1.0")
	if !d.Alert {
		t.Error("a rollback is not alerted")
	}
	s := r.spec()
	if s.Tracks["paid"].Version != "1.0" || s.Backends["paid"]["paid"] != 0 || s.Backends["paid"]["production"] != 90 {
		t.Fatalf("after the rollback: paid runs %s at weight %d", s.Tracks["paid"].Version, s.Backends["paid"]["paid"])
	}
	r.none(Observed{}) // rolled back: nothing moves, the rollback is not taken for a new deploy
	r.walkToCanary("1.2")
	r.want(r.step(verdict(analysis.Promote, "ok")), Promote, Baking, "paid")
	if s := r.spec(); s.Tracks["paid"].Version != "1.2" || s.Backends["paid"]["paid"] != 10 {
		t.Errorf("paid runs %s at weight %d, want 1.2 at 10", s.Tracks["paid"].Version, s.Backends["paid"]["paid"])
	}
}

// TestFirstStageRollback: internal is the only track of its backend, so
// an abort there puts the version back and leaves the weight.
func TestFirstStageAbort(t *testing.T) {
	r := newRig(t)
	r.edit(version("internal", "1.1"))
	earlier := Observed{Abort: "1.1 by carol at 2026-12-03T09:00:00Z: an earlier release"}
	r.step(earlier) // the abort was there when the release began
	if d := r.step(earlier); d != nil && d.Kind == Rollback {
		t.Fatalf("an abort said before the release rolled it back: %s", d.Reason)
	}
	r.want(r.step(Observed{Abort: "1.1 by carol at " + r.now.Format(time.RFC3339) + ": broken build"}), Rollback, RolledBack, "internal", "aborted: by carol", "version back to 1.0")
	if s := r.spec(); s.Tracks["internal"].Version != "1.0" || s.Backends["internal"]["internal"] != 100 {
		t.Errorf("internal runs %s at %d", s.Tracks["internal"].Version, s.Backends["internal"]["internal"])
	}
	r.none(Observed{})
}

func TestGateFails(t *testing.T) {
	r := newRig(t)
	r.edit(version("internal", "1.1"))
	r.step(Observed{})
	job := r.st.JobName("web", "internal", 0)
	r.step(Observed{})
	d := r.step(Observed{Jobs: map[string]JobStatus{job: JobFailed}, JobMessage: map[string]string{job: "BackoffLimitExceeded"}})
	r.want(d, Stop, Stopped, "internal", "Job "+job+" failed: BackoffLimitExceeded", "stays on internal")
	if !d.Alert || len(d.Edits) != 0 {
		t.Errorf("alert %v, edits %v; want an alert and no edit", d.Alert, d.Edits)
	}
	r.none(Observed{Approvals: map[string]string{"internal": "1.1 by alice at " + r.now.Format(time.RFC3339)}})
}

// TestSupersede: a build deployed while another bakes on canary replaces
// it: canary goes back, never two canaries.
func TestSupersede(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	r.edit(version("internal", "1.2"))
	d := r.step(Observed{})
	r.want(d, Supersede, Gates, "internal", "1.2 deployed on internal (it ran 1.1)", "release 1.1 superseded: canary back to 1.0")
	if s := r.spec(); s.Tracks["canary"].Version != "1.0" {
		t.Errorf("canary runs %s, want 1.0", s.Tracks["canary"].Version)
	}
}

func TestPauseAndHandEdits(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	r.none(Observed{Paused: true, Verdict: &analysis.Verdict{Action: analysis.Rollback}})
	// trackctl promote by hand: the pipeline follows.
	r.edit(version("paid", "1.1"))
	r.want(r.step(Observed{}), Follow, Baking, "paid", "paid runs 1.1")
	// A person sets paid to another version: the pipeline stops.
	r.edit(version("paid", "0.9"))
	r.want(r.step(Observed{}), Abort, Aborted, "paid", "tracks.paid.version was changed to 0.9 by hand")
}

// TestLostWrites: the controller wrote the spec, then stopped before it
// recorded the state. The next step on the old state ends where the lost
// one did.
func TestLostWrites(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	saved := r.st
	r.step(verdict(analysis.Promote, "ok")) // spec written: paid runs 1.1
	r.st = saved                            // the state was not
	r.want(r.step(Observed{}), Follow, Baking, "paid")
	saved = r.st
	r.step(verdict(analysis.Rollback, "slow"))
	r.st = saved
	r.want(r.step(Observed{}), Rollback, RolledBack, "paid", "paid runs 1.0 again")
	r.none(Observed{})
}

func TestJobName(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	st := State{Version: "1.2.0-rc.1", Started: at}
	if got := st.JobName("web", "internal", 0); !strings.HasPrefix(got, "web-internal-g1-1-2-0-rc-1-") || len(got) != len("web-internal-g1-1-2-0-rc-1-")+8 {
		t.Errorf("got %q", got)
	}
	if a, b := (State{Version: "1.0", Started: at}).JobName("web", "internal", 0), (State{Version: "1-0", Started: at}).JobName("web", "internal", 0); a == b {
		t.Errorf("versions 1.0 and 1-0 share the Job name %s", a)
	}
	if a, b := st.JobName("web", "internal", 0), (State{Version: st.Version, Started: at.Add(time.Hour)}).JobName("web", "internal", 0); a == b {
		t.Errorf("a later release of the same version reuses the Job %s", a)
	}
	long := State{Version: "2026.12.03-abcdef", Started: at}.JobName(strings.Repeat("s", 60), "production", 2)
	if len(long) > 63 {
		t.Errorf("long name %q (%d)", long, len(long))
	}
}

// TestDeployWithOtherEdits: a new build arriving in the same write as an
// edit of the stage the release is on (canary set back by hand) starts
// its release; the edit does not hide it.
func TestDeployWithOtherEdits(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	r.edit(version("internal", "1.2"), version("canary", "1.0"))
	d := r.step(Observed{})
	r.want(d, Start, Gates, "internal", "1.2 deployed on internal (it ran 1.1)", "release 1.1 superseded")
	if len(d.Edits) != 0 {
		t.Errorf("edits %v: canary already runs 1.0", d.Edits)
	}
}

// TestStagesReordered: the tracks reordered during a bake so that the
// stage baking is the last: the release ends there, nothing panics.
func TestStagesReordered(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	r.step(verdict(analysis.Promote, "ok")) // paid bakes
	r.text = strings.Replace(r.text, "  production: {version: \"1.0\"}\n", "", 1)
	r.text = strings.Replace(r.text, "  canary:\n", "  production: {version: \"1.0\"}\n  canary:\n", 1)
	if s := r.spec(); s.Stages[len(s.Stages)-1] != "paid" {
		t.Fatalf("stages %v", s.Stages)
	}
	r.want(r.step(verdict(analysis.Promote, "ok")), Finish, Done, "paid", "paid is now the last stage")
}

// TestPauseHoldsDeploy: a deploy while paused waits for resume.
func TestPauseHoldsDeploy(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	r.edit(version("internal", "1.2"))
	r.none(Observed{Paused: true})
	if s := r.spec(); s.Tracks["canary"].Version != "1.1" {
		t.Errorf("canary runs %s while paused, want 1.1 kept", s.Tracks["canary"].Version)
	}
	r.want(r.step(Observed{}), Supersede, Gates, "internal", "1.2 deployed on internal", "release 1.1 superseded: canary back to 1.0")
}

// TestPendingStaysBetweenJudgements: a pending decision (GitOps) stays
// while no decision comes, and goes with the next one.
func TestPendingStaysBetweenJudgements(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	r.st.Pending = &Pending{Kind: Promote, Version: "1.1", Stage: "paid", Edits: []string{"tracks.paid.version=1.1"}}
	r.none(Observed{})
	if r.st.Pending == nil {
		t.Fatal("the pending decision went between two judgements")
	}
	r.step(verdict(analysis.Promote, "ok"))
	if r.st.Pending != nil {
		t.Errorf("the pending decision outlived the next decision: %+v", r.st.Pending)
	}
}

// TestUnmeasuredNeverPromotes: a look with an HAProxy pod that could not
// be read neither promotes nor applies the lowTraffic rule (not measuring
// is not low traffic); a breach in what was read still rolls back.
func TestUnmeasuredNeverPromotes(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	cannot := &Measurement{Requests: 0, Need: 300, Unmeasured: []string{"pod web-haproxy-1: connection refused"}}
	for _, v := range []analysis.Verdict{
		{Action: analysis.Promote, Reason: "no breach in 10m"},
		{Action: analysis.Promote, Reason: "too little traffic (lowTraffic: promote)", LowTraffic: true},
		{Action: analysis.Rollback, Reason: "too little traffic (lowTraffic: rollback)", LowTraffic: true},
	} {
		r.none(Observed{Verdict: &v, Measured: cannot})
		if r.st.Phase != Baking || r.st.Stage != "canary" {
			t.Fatalf("after %q with a pod unmeasured: %s on %s, want baking on canary", v.Reason, r.st.Phase, r.st.Stage)
		}
		if j := r.st.Judged; j == nil || j.Action != analysis.Wait || !strings.Contains(j.Reason, "cannot measure: pod web-haproxy-1: connection refused") {
			t.Fatalf("after %q: judged %+v, want a wait that names the pod", v.Reason, j)
		}
	}
	breach := analysis.Verdict{Action: analysis.Rollback, Reason: "canary 5xx 4.8% (29/604) vs production 0.1%"}
	r.want(r.step(Observed{Verdict: &breach, Measured: cannot}), Rollback, RolledBack, "canary", "4.8% (29/604)")
}

// TestWords: what status says of a stage baking, from the last
// judgement and the time.
func TestWords(t *testing.T) {
	since := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	r := newRig(t)
	spec := r.spec() // canary: bake 10m, interval 30s (the default)
	judged := func(at time.Duration, requests int64, unmeasured ...string) map[string]string {
		st := State{Version: "1.1", Stage: "canary", Phase: Baking, Since: since}
		if at >= 0 {
			st.Judged = &Judgement{At: since.Add(at), Action: analysis.Wait, Requests: requests, Need: 300, Unmeasured: unmeasured}
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{KeyState: string(b)}
	}
	for _, c := range []struct {
		name string
		data map[string]string
		now  time.Duration
		want string
	}{
		{"baking", judged(2*time.Minute, 40), 2*time.Minute + 10*time.Second, "7m50s of bake left (40 of 300 requests so far)"},
		{"baking, enough requests already", judged(2*time.Minute, 420), 2*time.Minute + 10*time.Second, "7m50s of bake left (420 requests so far, 300 needed)"},
		{"baking, not judged yet", judged(-1, 0), 10 * time.Second, "9m50s of bake left"},
		{"waiting for traffic", judged(11*time.Minute, 294), 11*time.Minute + 5*time.Second, "bake over, waiting for 6 more requests (294 of 300 served)"},
		{"between judgements", judged(10*time.Minute-5*time.Second, 500), 10*time.Minute + 10*time.Second, "bake over, between judgements (the next within 15s)"},
		{"cannot measure", judged(11*time.Minute, 0, "pod web-haproxy-1: connection refused"), 11*time.Minute + 5*time.Second, "CANNOT MEASURE: pod web-haproxy-1: connection refused"},
		{"controller down", judged(3*time.Minute, 40), 5 * time.Minute, "NOT JUDGED since 2026-12-03T10:03:00Z (2m0s ago, every 30s expected): is track-controller running"},
		{"controller down before its first judgement", judged(-1, 0), 2 * time.Minute, "NOT JUDGED since 2026-12-03T10:00:00Z"},
	} {
		s, err := Describe(c.data, spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Words(since.Add(c.now)); !strings.Contains(got, c.want) {
			t.Errorf("%s: %q\nwant it to say %q", c.name, got, c.want)
		}
	}
}

// TestAlarm: status exits 1 for an hour after a rollback or a stop, and
// not after a release that ended well or a newer deploy.
func TestAlarm(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		phase Phase
		after time.Duration
		want  bool
	}{
		{RolledBack, time.Minute, true}, {Stopped, 59 * time.Minute, true}, {RolledBack, 61 * time.Minute, false},
		{Done, time.Minute, false}, {Baking, time.Minute, false}, {Aborted, time.Minute, false},
	} {
		s := &Status{Phase: c.phase, Since: at}
		if got := s.Alarm(at.Add(c.after)); got != c.want {
			t.Errorf("%s %s ago: alarm %v, want %v", c.phase, c.after, got, c.want)
		}
	}
}

// TestSaidOddWords: a word cut short, or without a time, is nobody's (and
// no panic), with Heard recorded or not.
func TestSaidOddWords(t *testing.T) {
	for _, st := range []State{{Version: "1.4.0"}, {Version: "1.4.0", Heard: map[string]string{}}} {
		for _, w := range []string{"1.4.0 by x at ", "1.4.0 by x at", "1.4.0", "1.4.0 ", "1.4.0 by x at nonsense", "1.4.0 by x at :"} {
			if st.Heard == nil && st.said(KeyAbort, w) {
				t.Errorf("%q counted, with no time", w)
			}
		}
	}
	st := State{Version: "1.4.0", Heard: map[string]string{KeyAbort: "1.4.0 by x at 2026-01-01T00:00:00Z"}}
	if st.said(KeyAbort, "1.4.0 by x at 2026-01-01T00:00:00Z") || !st.said(KeyAbort, "1.4.0 by y at 2026-01-01T00:00:00Z") {
		t.Error("a word heard at the start counted, or a new one did not")
	}
}

// TestSettling: a stage's bake waits while its track still serves the
// version it replaces, and begins when only the build serves, from then;
// a pod that restarts later does not start it again; a Deployment that
// never becomes available rolls the build back.
func TestSettling(t *testing.T) {
	r := newRig(t)
	r.walkToCanary("1.1")
	entered := r.st.Since
	old := Observed{Settling: "canary's 1.0 pods to leave; its bake starts once only 1.1 serves"}
	old.Verdict = &analysis.Verdict{Action: analysis.Rollback, Reason: "judged the old version"}
	r.none(old)
	if r.st.Settling != old.Settling || r.st.Settled || r.st.Phase != Baking {
		t.Fatalf("settling %q settled %v phase %s", r.st.Settling, r.st.Settled, r.st.Phase)
	}
	since := r.st.Since
	r.none(old) // the same words: nothing written again
	if r.st.Since != since || !since.After(entered) {
		t.Errorf("since %s (entered %s), want the first settling step's and unchanged", r.st.Since, entered)
	}
	spec := r.spec()
	s, err := Describe(mustWrite(t, r.st), spec)
	if err != nil || !strings.Contains(s.Words(r.now), "waiting for canary's 1.0 pods to leave") || s.BakeEnds != nil {
		t.Errorf("status %q (bake ends %v, %v)", s.Words(r.now), s.BakeEnds, err)
	}
	r.none(Observed{}) // only 1.1 serves: the bake begins
	if r.st.Settling != "" || !r.st.Settled || r.st.Since != r.now {
		t.Fatalf("after settling: %q settled %v since %s, want the bake from %s", r.st.Settling, r.st.Settled, r.st.Since, r.now)
	}
	started := r.st.Since
	r.none(Observed{Settling: "canary's old pods to finish leaving", Verdict: &analysis.Verdict{Action: analysis.Wait}}) // settled: not looked at again
	if r.st.Since != started || r.st.Settling != "" {
		t.Errorf("a settled bake started again: since %s settling %q", r.st.Since, r.st.Settling)
	}
	r.want(r.step(verdict(analysis.Rollback, "canary errors 2.0%")), Rollback, RolledBack, "canary", "canary errors 2.0%")

	// A build whose Deployment never becomes available.
	r.walkToCanary("1.2")
	r.want(r.step(Observed{Stuck: "canary never ran 1.2: Deployment web-canary-1.2 passed its progress deadline without becoming available"}),
		Rollback, RolledBack, "canary", "1.2 rolled back on canary: canary never ran 1.2", "its version back to 1.0")
	if r.st.Settling != "" || r.st.Settled {
		t.Errorf("rolled back with settling %q settled %v", r.st.Settling, r.st.Settled)
	}
}

func mustWrite(t *testing.T, st State) map[string]string {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{KeyState: string(b)}
}
