package pipeline

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/weights"
)

// A service's release lives in its release ConfigMap (ConfigMapName): the
// state under KeyState, written by track-controller's leader, and what
// people tell the pipeline under keys of their own, written by trackctl
// (approve, pause, abort).
const (
	KeyState    = contract.KeyState
	KeyPaused   = contract.KeyPaused
	KeyAbort    = contract.KeyAbort
	KeyApproved = contract.KeyApproved // + stage
	// LabelReleaseOf names the service a release ConfigMap is of (not
	// trackrouter.dev/service: that label marks specs).
	LabelReleaseOf = contract.LabelReleaseOf
)

// ConfigMapName is the name of a service's release ConfigMap.
func ConfigMapName(service string) string { return contract.ReleaseName(service) }

// Uses reports whether any stage of s has gates or an analysis: only then
// does the pipeline act (and write) for it.
func Uses(s *weights.Spec) bool {
	for _, t := range s.Tracks {
		if len(t.Gates) > 0 || t.Analysis != nil {
			return true
		}
	}
	return false
}

// Read is the state and the people's keys of a release ConfigMap's data.
func Read(data map[string]string) (State, Observed, error) {
	var st State
	obs := Observed{Paused: data[KeyPaused] != "", Abort: data[KeyAbort], Approvals: map[string]string{}}
	for k, v := range data {
		if stage, ok := strings.CutPrefix(k, KeyApproved); ok {
			obs.Approvals[stage] = v
		}
	}
	if s := data[KeyState]; s != "" {
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			return st, obs, fmt.Errorf("key %s is not a release state (%v): delete the key to start over", KeyState, err)
		}
	}
	return st, obs, nil
}

// Status is a release as trackctl status shows it.
type Status struct {
	Version string    `json:"version"`
	Stage   string    `json:"stage"`
	Phase   Phase     `json:"phase"`
	Since   time.Time `json:"since"`
	// Waiting says what the release waits for, in words ("" when it
	// waits for nothing but time).
	Waiting string `json:"waiting,omitempty"`
	// BakeEnds is when the stage's bake is over (Baking only).
	BakeEnds *time.Time `json:"bakeEnds,omitempty"`
	// Interval is how often the stage baking is judged (Baking only).
	Interval time.Duration `json:"interval,omitempty"`
	// Judged is the last judgement of the stage baking (Baking only).
	Judged *Judgement `json:"judged,omitempty"`
	Paused string     `json:"paused,omitempty"`
	// Reason is the last decision's, in words and numbers.
	Reason    string     `json:"reason"`
	Decisions []Decision `json:"decisions,omitempty"`
}

// Describe is the release of spec's service as data holds it; nil when
// there is none to show (no state, or idle).
func Describe(data map[string]string, spec *weights.Spec) (*Status, error) {
	st, _, err := Read(data)
	if err != nil {
		return nil, err
	}
	if st.Phase == "" || st.Phase == Idle {
		return nil, nil
	}
	s := &Status{Version: st.Version, Stage: st.Stage, Phase: st.Phase, Since: st.Since, Paused: data[KeyPaused], Reason: st.Reason, Decisions: st.Decisions}
	tr, ok := spec.Tracks[st.Stage]
	if !ok || !st.Phase.InFlight() {
		return s, nil
	}
	if st.Settling != "" {
		// What comes once only the build serves: its gates (the bake
		// has not begun: no time left to say).
		defer func() {
			if s.Waiting != "" {
				s.Waiting = st.Settling + "; then " + s.Waiting
			} else {
				s.Waiting = st.Settling
			}
			s.BakeEnds, s.Interval, s.Judged = nil, 0, nil
		}()
	}
	switch st.Phase {
	case Gates:
		if st.Gate < len(tr.Gates) {
			g := tr.Gates[st.Gate]
			if g.Approval {
				s.Waiting = fmt.Sprintf("gate %d of %d: approval (trackctl approve %s)", st.Gate+1, len(tr.Gates), spec.Service)
			} else {
				s.Waiting = fmt.Sprintf("gate %d of %d: Job %s", st.Gate+1, len(tr.Gates), st.JobName(spec.Service, st.Stage, st.Gate))
			}
		}
	case Baking:
		if tr.Analysis != nil {
			end := st.Since.Add(tr.Analysis.Bake)
			s.BakeEnds, s.Interval, s.Judged = &end, tr.Analysis.Interval, st.Judged
		}
	case Manual:
		s.Waiting = fmt.Sprintf("a person: trackctl promote %s %s", spec.Service, st.Version)
	}
	return s, nil
}

// Words is the release in one line. A stage baking says which of these
// it is: baking (the bake's time left), cannot measure (which pods, why),
// waiting for N more requests, between two judgements, or judged no more
// (the controller is not running, or not leading).
func (s *Status) Words(now time.Time) string {
	w := fmt.Sprintf("release %s: %s on %s since %s", s.Version, s.Phase.Words(), s.Stage, s.Since.UTC().Format(time.RFC3339))
	if s.BakeEnds != nil {
		w += ", " + s.bakeWords(now)
	}
	if s.Waiting != "" {
		w += "; waiting for " + s.Waiting
	}
	if s.Paused != "" {
		w += "; PAUSED " + s.Paused
	}
	if s.Alarm(now) {
		w += fmt.Sprintf(" (trackctl status exits 1 until %s, an hour after it, or until a newer build is deployed)", s.Since.Add(AlarmFor).UTC().Format(time.RFC3339))
	}
	return w
}

// StaleAfter is how long past its interval a judgement may be late before
// status says the controller is not judging: the leader's lease is
// renewed within 15 s, a new leader takes over within about 30 s.
const StaleAfter = 45 * time.Second

func (s *Status) bakeWords(now time.Time) string {
	last := s.Since
	j := s.Judged
	if j != nil && j.At.After(last) {
		last = j.At
	}
	if s.Paused == "" && now.Sub(last) > s.Interval+StaleAfter {
		return fmt.Sprintf("NOT JUDGED since %s (%s ago, every %s expected): is track-controller running and leading? (kubectl get lease -A | grep track-controller)",
			last.UTC().Format(time.RFC3339), now.Sub(last).Round(time.Second), s.Interval)
	}
	left := s.BakeEnds.Sub(now).Round(time.Second)
	switch {
	case j != nil && len(j.Unmeasured) > 0:
		return "CANNOT MEASURE: " + strings.Join(j.Unmeasured, "; ") + " (a build is promoted only on every HAProxy pod's counts)"
	case left > 0:
		w := fmt.Sprintf("%s of bake left", left)
		switch {
		case j != nil && j.Requests >= j.Need:
			w += fmt.Sprintf(" (%d requests so far, %d needed)", j.Requests, j.Need)
		case j != nil:
			w += fmt.Sprintf(" (%d of %d requests so far)", j.Requests, j.Need)
		}
		return w
	case j != nil && j.Requests < j.Need:
		return fmt.Sprintf("bake over, waiting for %d more requests (%d of %d served)", j.Need-j.Requests, j.Requests, j.Need)
	}
	next := last.Add(s.Interval).Sub(now).Round(time.Second)
	return fmt.Sprintf("bake over, between judgements (the next within %s)", max(next, 0))
}

// AlarmFor is how long after a rollback or a stopped release trackctl
// status exits 1 (unless a newer build is deployed before).
const AlarmFor = time.Hour

// Alarm reports whether the release was rolled back or stopped in the
// last AlarmFor: a cron job that watches status's exit code sees it.
func (s *Status) Alarm(now time.Time) bool {
	return (s.Phase == RolledBack || s.Phase == Stopped) && now.Sub(s.Since) < AlarmFor
}

// Approvals lists data's approvals, for display.
func Approvals(data map[string]string) []string {
	var out []string
	for k, v := range data {
		if stage, ok := strings.CutPrefix(k, KeyApproved); ok {
			out = append(out, stage+": "+v)
		}
	}
	sort.Strings(out)
	return out
}
