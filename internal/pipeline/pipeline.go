// Package pipeline decides a release's next step: a build deployed on a
// service's first stage walks the stages in the spec's order, each stage
// passing its gates and its bake under analysis before the build moves to
// the next, and a stage that breaches is rolled back. Step is a pure
// function: the release's state, the spec and what was observed (the
// time, approvals, Jobs, the analysis verdict) in; the next state and at
// most one Decision (spec edits, a Job to run) out. track-controller's
// leader runs it and makes the writes (controller/releases).
package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/release"
	"github.com/trackrouter/trackrouter/weights"
)

// Phase is where a release is.
type Phase string

const (
	Idle       Phase = "idle"       // no release in flight
	Gates      Phase = "gates"      // the stage's gates run, in order
	Baking     Phase = "baking"     // the stage bakes under analysis
	Manual     Phase = "manual"     // the stage has no gates and no analysis: trackctl promote moves it
	Done       Phase = "done"       // the build runs on the last stage
	RolledBack Phase = "rolledback" // a stage breached its analysis, or was aborted
	Stopped    Phase = "stopped"    // a gate failed: the build stays where it is
	Superseded Phase = "superseded" // a newer build was deployed
	Aborted    Phase = "aborted"    // someone changed the stage's version by hand
)

// Words is the phase for people: its key, but "rolled back".
func (p Phase) Words() string {
	if p == RolledBack {
		return "rolled back"
	}
	return string(p)
}

// InFlight reports whether the pipeline still acts on the release.
func (p Phase) InFlight() bool { return p == Gates || p == Baking || p == Manual }

// State is a release as recorded in the service's release ConfigMap.
type State struct {
	Version string    `json:"version,omitempty"` // the build in flight, or the last one
	Stage   string    `json:"stage,omitempty"`   // the track it is on
	Phase   Phase     `json:"phase"`
	Since   time.Time `json:"since"` // when the phase began (a bake's start)
	// Started is when the release began: an approval or an abort said
	// before it, or a gate's Job of an earlier release of the same
	// version, is not this release's.
	Started time.Time `json:"started,omitempty"`
	Gate    int       `json:"gate,omitempty"`
	// Before is the version each stage ran before this release came to it:
	// what a rollback puts back.
	Before map[string]string `json:"before,omitempty"`
	// Heard is what the people's keys (approved.<stage>, abort) held when
	// the release began: those words are not this release's. Never
	// omitted once set (an empty map is not "not recorded").
	Heard map[string]string `json:"heard"`
	// Zeroed are the weights a rollback set to 0, by track and backend:
	// the next release to reach that stage puts them back.
	Zeroed map[string]map[string]int `json:"zeroed,omitempty"`
	// Seen is every stage's version at the last step, to tell a new
	// deploy (and the version it replaced) from the pipeline's own writes.
	Seen map[string]string `json:"seen,omitempty"`
	// Reason is the last decision's, in words and numbers.
	Reason    string     `json:"reason,omitempty"`
	Decisions []Decision `json:"decisions,omitempty"` // the last DecisionLimit, oldest first
	// Pending, in GitOps mode, is a decision whose spec edits wait to be
	// made in git (trackctl follow); the release moves on once the spec
	// synced from git holds them.
	Pending *Pending `json:"pending,omitempty"`
	// Settling says why the stage's track does not serve only the build
	// yet (its new pods starting, its old ones leaving): its gates and its
	// bake wait, so that neither judges the version it replaces. "" once
	// it does; the phase's Since is then when it began to. Settled: the
	// stage served only the build once (a pod that restarts later is not
	// looked at again: the bake goes on).
	Settling string `json:"settling,omitempty"`
	Settled  bool   `json:"settled,omitempty"`
	// Judged is the last judgement of the stage baking, with what it
	// measured: written at each judgement (one write per interval while a
	// stage bakes, none at rest), so that trackctl status can say what the
	// release waits for, and see a controller that stopped judging.
	Judged *Judgement `json:"judged,omitempty"`
}

// Judgement is one look of the analysis at the stage baking.
type Judgement struct {
	At     time.Time       `json:"at"`
	Action analysis.Action `json:"action"`
	Reason string          `json:"reason"`
	// Requests the canary served since the bake began, of Need (the
	// analysis' minRequests).
	Requests int64 `json:"requests"`
	Need     int64 `json:"need"`
	// Unmeasured are the HAProxy pods whose samples could not be read at
	// this look, "POD: why" (or why no pod could be).
	Unmeasured []string `json:"unmeasured,omitempty"`
	// Counts are the bake's tallies after this look: each pod's counters
	// where the stage's count starts, and as last read. Another controller
	// (a restart, a new leader) goes on from them, so a bake is judged
	// from the stage's start whoever leads; written with the judgement,
	// no write of its own.
	Counts *BakeCounts `json:"counts,omitempty"`
	// Evidence is the numbers this look compared.
	Evidence *analysis.Evidence `json:"evidence,omitempty"`
}

// BakeCounts are the canary's and the baseline's tallies of a bake.
type BakeCounts struct {
	Canary   analysis.TallyState `json:"canary"`
	Baseline analysis.TallyState `json:"baseline"`
}

// Measurement is what the controller could read for a judgement.
type Measurement struct {
	Requests, Need int64
	// Unmeasured: see Judgement.
	Unmeasured []string
	// Counts: see Judgement.
	Counts *BakeCounts
}

// Pending is a decision waiting for its edits to reach the spec.
type Pending struct {
	Kind    Kind      `json:"kind"`
	Version string    `json:"version"`
	Stage   string    `json:"stage"`
	Reason  string    `json:"reason"`
	Since   time.Time `json:"since"`
	// Edits are "path=value", e.g. tracks.paid.version=1.2.0.
	Edits []string `json:"edits"`
}

// PendingOf is d waiting in GitOps mode.
func PendingOf(d *Decision, now time.Time) *Pending {
	p := &Pending{Kind: d.Kind, Version: d.Version, Stage: d.Stage, Reason: d.Reason, Since: now.UTC().Truncate(time.Second)}
	for _, e := range d.Edits {
		p.Edits = append(p.Edits, e.String())
	}
	return p
}

// Same reports whether p and o ask for the same edits.
func (p *Pending) Same(o *Pending) bool {
	return p != nil && o != nil && p.Kind == o.Kind && p.Version == o.Version && slices.Equal(p.Edits, o.Edits)
}

// ParseEdits reads Pending.Edits back.
func ParseEdits(edits []string) ([]release.Edit, error) {
	var out []release.Edit
	for _, e := range edits {
		path, value, ok := strings.Cut(e, "=")
		parts := strings.Split(path, ".")
		if !ok || len(parts) != 3 || (parts[0] != "tracks" && parts[0] != "backends") {
			return nil, fmt.Errorf("pending edit %q: want tracks.TRACK.version=V or backends.BACKEND.TRACK=W", e)
		}
		out = append(out, release.Edit{Path: parts, Value: value})
	}
	return out, nil
}

// DecisionLimit is how many decisions a State keeps.
const DecisionLimit = 20

// Kind is what a decision does.
type Kind string

const (
	Start     Kind = "start"     // a new build on the first stage
	Promote   Kind = "promote"   // the build moves to the next stage
	Rollback  Kind = "rollback"  // the stage's weights to 0 and its version back
	Stop      Kind = "stop"      // a gate failed
	Supersede Kind = "supersede" // a newer build replaces the release: its later stages go back
	Follow    Kind = "follow"    // someone moved the build by hand; the pipeline follows
	Abort     Kind = "abort"     // the release ends without a rollback
	Pass      Kind = "pass"      // a gate passed
	RunJob    Kind = "job"       // a gate's Job is started
	Finish    Kind = "done"      // the build reached the last stage
)

// Decision is one step of a release, with its reason.
type Decision struct {
	At      time.Time `json:"at"`
	Kind    Kind      `json:"kind"`
	Version string    `json:"version"`
	Stage   string    `json:"stage"`
	Reason  string    `json:"reason"`
	// Evidence is the analysis' numbers a promotion or a rollback after a
	// bake was decided on.
	Evidence *analysis.Evidence `json:"evidence,omitempty"`
	// Edits are the spec changes the decision makes (none: only the state
	// changes).
	Edits []release.Edit `json:"-"`
	// Job is the gate whose Job is to be started (RunJob).
	Job *JobGate `json:"-"`
	// Alert: people are told (a rollback, a failed gate).
	Alert bool `json:"-"`
}

// JobGate is a gate's Job to run.
type JobGate struct {
	Name  string // the Job's name (JobName)
	Index int    // the gate's index in the stage's gates
}

// JobStatus is what became of a gate's Job.
type JobStatus string

const (
	JobAbsent    JobStatus = ""
	JobRunning   JobStatus = "running"
	JobSucceeded JobStatus = "succeeded"
	JobFailed    JobStatus = "failed"
)

// Observed is what the controller saw for one step.
type Observed struct {
	Now time.Time
	// Paused: trackctl pause; nothing moves until trackctl resume.
	Paused bool
	// Abort is "VERSION by USER" from trackctl abort, or "".
	Abort string
	// Approvals by stage: "VERSION by USER at TIME" from trackctl approve.
	Approvals map[string]string
	// Jobs by name: what became of each gate's Job.
	Jobs map[string]JobStatus
	// JobMessage by name: why a Job failed, in its own words.
	JobMessage map[string]string
	// Verdict is the analysis of the stage being baked, when it was judged
	// at this step (its interval came); nil otherwise.
	Verdict *analysis.Verdict
	// Measured is what the verdict was judged from (with Verdict).
	Measured *Measurement
	// Settling (for a stage with gates or a bake, until it settled): why
	// the stage's track does not serve only the build yet, "" when it
	// does (see State.Settling). Stuck: why it never will (its Deployment
	// passed its progress deadline); the build is rolled back.
	Settling, Stuck string
}

// Step decides what comes next for the release of spec's service. The
// state returned is to be recorded once the decision's edits are written
// (Seen then holds the versions after them); when a step's writes are
// lost half way (the controller stopped between the spec and the state),
// the next step on the old state finds the spec already changed and
// comes to the same place: a promotion is followed, a rollback is seen
// done, a start is made again with the same edits.
func Step(st State, spec *weights.Spec, obs Observed) (State, *Decision) {
	if obs.Paused && st.Phase.InFlight() && !st.said(KeyAbort, obs.Abort) {
		// Paused: nothing moves, a new deploy neither (it is seen, and
		// supersedes the release, at resume); an abort still works.
		return st.clone(), nil
	}
	versions := map[string]string{}
	for _, t := range spec.Stages {
		versions[t] = spec.Tracks[t].Version
	}
	next, d := step(st.clone(), spec, versions, obs)
	if d != nil {
		for _, e := range d.Edits {
			if e.Path[0] == "tracks" && e.Path[2] == "version" {
				versions[e.Path[1]] = e.Value
			}
		}
	}
	next.Seen = versions
	if d != nil {
		// A decision ends what was pending (its edits arrived, or another
		// decision replaces it); in GitOps mode the controller sets it
		// again for edits the spec does not hold yet. Between two
		// judgements a pending decision stays.
		next.Pending = nil
	}
	return next, d
}

func step(st State, spec *weights.Spec, versions map[string]string, obs Observed) (State, *Decision) {
	first := spec.Stages[0]
	if st.Seen == nil { // the first look at this service: nothing to release
		st.Phase, st.Since = Idle, obs.Now
		return st, nil
	}
	rolledBack := st.Phase.InFlight() && versions[st.Stage] != st.Version && versions[st.Stage] == st.Before[st.Stage] && st.Before[st.Stage] != ""
	// A new build on the first stage comes first: it may arrive in the
	// same write as other edits (which it then supersedes). On the first
	// stage, the version it ran before the release is a rollback, not a
	// new build.
	if v := versions[first]; v != st.Seen[first] && v != st.Version && !(rolledBack && st.Stage == first) {
		return st.start(spec, obs, v)
	}
	if rolledBack {
		return st.end(obs.Now, RolledBack, Rollback, fmt.Sprintf("%s runs %s again (rolled back by hand, or by a controller that stopped before it recorded so)", st.Stage, st.Before[st.Stage]), nil)
	}
	if !st.Phase.InFlight() {
		return st, nil
	}
	if _, ok := spec.Tracks[st.Stage]; !ok {
		return st.end(obs.Now, Aborted, Abort, fmt.Sprintf("stage %s is no longer in the spec", st.Stage), nil)
	}
	i := slices.Index(spec.Stages, st.Stage)
	if i == len(spec.Stages)-1 {
		// The tracks were reordered (the stages are their order in the
		// spec): nothing comes after this stage now.
		return st.end(obs.Now, Done, Finish, fmt.Sprintf("%s is now the last stage of the spec (the tracks were reordered): the release ends there", st.Stage), nil)
	}
	if versions[spec.Stages[i+1]] == st.Version && st.Seen[spec.Stages[i+1]] != st.Version {
		// trackctl promote by hand, or the pipeline's own promotion whose
		// state was not written (the controller stopped between the two).
		if st.Before == nil {
			st.Before = map[string]string{}
		}
		st.Before[spec.Stages[i+1]] = st.Seen[spec.Stages[i+1]]
		return st.enter(spec, obs.Now, i+1, Follow, fmt.Sprintf("%s runs %s: the release follows it there", spec.Stages[i+1], st.Version), nil)
	}
	if versions[st.Stage] != st.Version {
		return st.end(obs.Now, Aborted, Abort, fmt.Sprintf("tracks.%s.version was changed to %s by hand: the pipeline stops", st.Stage, versions[st.Stage]), nil)
	}
	if st.said(KeyAbort, obs.Abort) {
		return st.rollback(spec, obs.Now, "aborted: "+strings.TrimPrefix(obs.Abort, st.Version+" "))
	}
	if obs.Paused {
		return st, nil
	}
	if (st.Phase == Gates || st.Phase == Baking) && !st.Settled {
		switch {
		case obs.Stuck != "":
			return st.rollback(spec, obs.Now, obs.Stuck)
		case obs.Settling != "":
			if st.Settling != obs.Settling {
				st.Settling, st.Since, st.Judged = obs.Settling, obs.Now, nil
			}
			return st, nil
		case st.Settling != "":
			// Only the build serves now: its gates run, its bake begins,
			// from here.
			st.Settling, st.Settled, st.Since, st.Judged = "", true, obs.Now, nil
			return st, nil
		}
		st.Settled = true
	}
	switch st.Phase {
	case Gates:
		return st.gates(spec, obs)
	case Baking:
		if obs.Verdict == nil {
			return st, nil
		}
		v := measured(*obs.Verdict, obs.Measured)
		st.Judged = &Judgement{At: obs.Now.UTC().Truncate(time.Second), Action: v.Action, Reason: v.Reason, Evidence: v.Evidence}
		if m := obs.Measured; m != nil {
			st.Judged.Requests, st.Judged.Need, st.Judged.Unmeasured, st.Judged.Counts = m.Requests, m.Need, m.Unmeasured, m.Counts
		}
		var d *Decision
		switch v.Action {
		case analysis.Rollback:
			st, d = st.rollback(spec, obs.Now, v.Reason)
		case analysis.Promote:
			st, d = st.promote(spec, obs.Now, v.Reason)
		default:
			return st, nil
		}
		// The decision keeps what it was reached on, for people to see
		// after the stage moved on.
		if d != nil && v.Evidence != nil && len(st.Decisions) > 0 {
			d.Evidence = v.Evidence
			st.Decisions[len(st.Decisions)-1].Evidence = v.Evidence
		}
		return st, d
	}
	return st, nil
}

// measured is v, unless some HAProxy pod could not be measured: then a
// promotion waits (a build is promoted only on every pod's counts), and
// so does the lowTraffic rule (not measuring is not low traffic). A
// breach found in the pods that were read is still a breach.
func measured(v analysis.Verdict, m *Measurement) analysis.Verdict {
	if m == nil || len(m.Unmeasured) == 0 || (v.Action == analysis.Rollback && !v.LowTraffic) {
		return v
	}
	return analysis.Verdict{Action: analysis.Wait, Reason: "cannot measure: " + strings.Join(m.Unmeasured, "; ") +
		" (a build is promoted only on every HAProxy pod's counts; the release waits)"}
}

// start puts a new build's release on the first stage; a release still
// in flight is superseded, its later stages put back.
func (st State) start(spec *weights.Spec, obs Observed, version string) (State, *Decision) {
	now := obs.Now
	first := spec.Stages[0]
	var edits []release.Edit
	var back []string
	if st.Phase.InFlight() {
		for _, t := range spec.Stages[1:] {
			if spec.Tracks[t].Version == st.Version && st.Before[t] != "" && st.Before[t] != st.Version {
				edits = append(edits, release.Edit{Path: []string{"tracks", t, "version"}, Value: st.Before[t]})
				back = append(back, t+" back to "+st.Before[t])
			}
		}
	}
	reason := fmt.Sprintf("%s deployed on %s (it ran %s)", version, first, orNone(st.Seen[first]))
	kind := Start
	if len(back) > 0 {
		kind = Supersede
		reason += fmt.Sprintf("; release %s superseded: %s", st.Version, strings.Join(back, ", "))
	} else if st.Phase.InFlight() {
		reason += fmt.Sprintf("; release %s superseded", st.Version)
	}
	st.Version, st.Before, st.Started = version, map[string]string{first: st.Seen[first]}, now.UTC().Truncate(time.Second)
	st.Heard = map[string]string{}
	if obs.Abort != "" {
		st.Heard[KeyAbort] = obs.Abort
	}
	for stage, a := range obs.Approvals {
		st.Heard[KeyApproved+stage] = a
	}
	return st.enter(spec, now, 0, kind, reason, edits)
}

// enter puts the release on stage i: its gates first, then its bake; a
// stage with neither waits for a person (Manual); the last stage ends it.
func (st State) enter(spec *weights.Spec, now time.Time, i int, kind Kind, reason string, edits []release.Edit) (State, *Decision) {
	t := spec.Stages[i]
	st.Stage, st.Gate, st.Since, st.Judged, st.Settling, st.Settled = t, 0, now, nil, "", false
	tr := spec.Tracks[t]
	switch {
	case i == len(spec.Stages)-1:
		st.Phase = Done
		if kind == Promote {
			kind = Finish
		}
		reason += fmt.Sprintf("; %s runs on every stage to %s: the release is done", st.Version, t)
	case len(tr.Gates) > 0:
		st.Phase = Gates
	case tr.Analysis != nil:
		st.Phase = Baking
	default:
		st.Phase = Manual
		reason += fmt.Sprintf("; %s has no gates and no analysis: trackctl promote %s %s moves it on", t, spec.Service, st.Version)
	}
	return st.decide(now, kind, t, reason, edits, false)
}

// gates checks the stage's gates in order.
func (st State) gates(spec *weights.Spec, obs Observed) (State, *Decision) {
	gates := spec.Tracks[st.Stage].Gates
	for st.Gate < len(gates) {
		g := gates[st.Gate]
		if g.Approval {
			a := obs.Approvals[st.Stage]
			if !st.said(KeyApproved+st.Stage, a) {
				return st, nil // waiting: trackctl approve
			}
			st.Gate++
			return st.decide(obs.Now, Pass, st.Stage, fmt.Sprintf("gate %d (approval) passed: approved %s", st.Gate, strings.TrimPrefix(a, st.Version+" ")), nil, false)
		}
		name := st.JobName(spec.Service, st.Stage, st.Gate)
		switch obs.Jobs[name] {
		case JobAbsent:
			st2, d := st.decide(obs.Now, RunJob, st.Stage, fmt.Sprintf("gate %d: Job %s started against %s", st.Gate+1, name, st.Stage), nil, false)
			d.Job = &JobGate{Name: name, Index: st.Gate}
			return st2, d
		case JobRunning:
			return st, nil
		case JobFailed:
			msg := fmt.Sprintf("gate %d: Job %s failed", st.Gate+1, name)
			if m := obs.JobMessage[name]; m != "" {
				msg += ": " + m
			}
			return st.end(obs.Now, Stopped, Stop, msg+fmt.Sprintf("; %s stays on %s, the release stops", st.Version, st.Stage), nil)
		case JobSucceeded:
			st.Gate++
			return st.decide(obs.Now, Pass, st.Stage, fmt.Sprintf("gate %d: Job %s succeeded", st.Gate, name), nil, false)
		}
	}
	if spec.Tracks[st.Stage].Analysis != nil {
		st.Phase, st.Since = Baking, obs.Now
		return st.decide(obs.Now, Pass, st.Stage, fmt.Sprintf("every gate of %s passed: the bake begins", st.Stage), nil, false)
	}
	return st.promote(spec, obs.Now, fmt.Sprintf("every gate of %s passed", st.Stage))
}

// promote moves the build to the next stage, putting back the weights a
// rollback of it had set to 0.
func (st State) promote(spec *weights.Spec, now time.Time, reason string) (State, *Decision) {
	i := slices.Index(spec.Stages, st.Stage)
	if i < 0 || i+1 >= len(spec.Stages) {
		return st.end(now, Done, Finish, fmt.Sprintf("%s has no stage after it: the release ends there", st.Stage), nil)
	}
	next := spec.Stages[i+1]
	edits := []release.Edit{{Path: []string{"tracks", next, "version"}, Value: st.Version}}
	for _, b := range slices.Sorted(maps.Keys(st.Zeroed[next])) {
		if _, ok := spec.Backends[b][next]; ok && spec.Backends[b][next] == 0 {
			edits = append(edits, release.Edit{Path: []string{"backends", b, next}, Value: fmt.Sprint(st.Zeroed[next][b])})
		}
	}
	if st.Before == nil {
		st.Before = map[string]string{}
	}
	st.Before[next] = spec.Tracks[next].Version
	delete(st.Zeroed, next)
	return st.enter(spec, now, i+1, Promote, fmt.Sprintf("%s promoted from %s to %s: %s", st.Version, st.Stage, next, reason), edits)
}

// rollback sets the stage's weights to 0 and its version back to the one
// it ran before the release. A stage that is the only track of some
// backend keeps its weights (there is nothing else to serve them).
func (st State) rollback(spec *weights.Spec, now time.Time, reason string) (State, *Decision) {
	t := st.Stage
	edits, err := release.Rollback(t, st.Before[t])(spec)
	if err != nil { // t is the only track of some backend
		edits = nil
		if st.Before[t] != "" {
			edits = []release.Edit{{Path: []string{"tracks", t, "version"}, Value: st.Before[t]}}
		}
	}
	zeroed := map[string]int{}
	for _, e := range edits {
		if e.Path[0] == "backends" {
			zeroed[e.Path[1]] = spec.Backends[e.Path[1]][t]
		}
	}
	if len(zeroed) > 0 {
		if st.Zeroed == nil {
			st.Zeroed = map[string]map[string]int{}
		}
		st.Zeroed[t] = zeroed
	}
	words := fmt.Sprintf("%s rolled back on %s: %s", st.Version, t, reason)
	switch {
	case len(zeroed) > 0 && st.Before[t] != "":
		words += fmt.Sprintf("; its weights to 0, its version back to %s", st.Before[t])
	case st.Before[t] != "":
		words += fmt.Sprintf("; its version back to %s", st.Before[t])
	}
	return st.end(now, RolledBack, Rollback, words, edits)
}

func (st State) end(now time.Time, phase Phase, kind Kind, reason string, edits []release.Edit) (State, *Decision) {
	st.Phase, st.Since, st.Settling, st.Settled = phase, now, "", false
	return st.decide(now, kind, st.Stage, reason, edits, kind == Rollback || kind == Stop)
}

func (st State) decide(now time.Time, kind Kind, stage, reason string, edits []release.Edit, alert bool) (State, *Decision) {
	d := Decision{At: now.UTC().Truncate(time.Second), Kind: kind, Version: st.Version, Stage: stage, Reason: reason, Edits: edits, Alert: alert}
	st.Reason = reason
	st.Decisions = append(st.Decisions, d)
	if len(st.Decisions) > DecisionLimit {
		st.Decisions = st.Decisions[len(st.Decisions)-DecisionLimit:]
	}
	return st, &d
}

// JobName is the name of a gate's Job: the same for the same release,
// stage and gate (so a restarted controller finds it), another for another
// release (of the same version too), a DNS label of at most 63 characters.
func (st State) JobName(service, stage string, gate int) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(fmt.Sprintf("%s-%s-g%d-%s", service, stage, gate+1, st.Version)))
	h := fnv32(fmt.Sprintf("%s/%s/%d/%s/%d", service, stage, gate, st.Version, st.Started.Unix()))
	if len(name) > 54 {
		name = strings.TrimRight(name[:54], "-")
	}
	return fmt.Sprintf("%s-%08x", name, h)
}

// said reports whether a person's word (trackctl approve or abort: "VERSION
// by USER at TIME[: reason]", under key) is for this release: its version,
// and written after the release began (not what the key held then: a word
// said before, a pre-approval with a time to come, is not this release's).
// Who said it is checked by the API server (examples/install's policy);
// when it counts is the controller's time, the decision's. A release begun
// before Heard was recorded falls back on the time written.
func (st State) said(key, word string) bool {
	if st.Version == "" || !strings.HasPrefix(word, st.Version+" ") {
		return false
	}
	if st.Heard != nil {
		return word != st.Heard[key]
	}
	_, rest, ok := strings.Cut(word, " at ")
	f := strings.Fields(rest)
	if !ok || len(f) == 0 {
		return false
	}
	at, err := time.Parse(time.RFC3339, strings.TrimSuffix(f[0], ":"))
	return err == nil && !at.Before(st.Started)
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func (st State) clone() State {
	c := st
	c.Before = maps.Clone(st.Before)
	c.Seen = maps.Clone(st.Seen)
	c.Heard = maps.Clone(st.Heard)
	if st.Zeroed != nil {
		c.Zeroed = make(map[string]map[string]int, len(st.Zeroed))
		for k, v := range st.Zeroed {
			c.Zeroed[k] = maps.Clone(v)
		}
	}
	c.Decisions = append([]Decision(nil), st.Decisions...)
	if st.Pending != nil {
		p := *st.Pending
		c.Pending = &p
	}
	if st.Judged != nil {
		j := *st.Judged
		j.Unmeasured = slices.Clone(j.Unmeasured)
		c.Judged = &j
	}
	return c
}

func orNone(v string) string {
	if v == "" {
		return "nothing"
	}
	return v
}
