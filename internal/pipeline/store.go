package pipeline

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/trackrouter/trackrouter/weights"
)

// A service's release lives in its release ConfigMap (ConfigMapName): the
// state under KeyState, written by track-controller's leader, and what
// people tell the pipeline under keys of their own, written by trackctl
// (approve, pause, abort).
const (
	KeyState    = "state"
	KeyPaused   = "paused"
	KeyAbort    = "abort"
	KeyApproved = "approved." // + stage
	// LabelReleaseOf names the service a release ConfigMap is of (not
	// trackrouter.dev/service: that label marks specs).
	LabelReleaseOf = "trackrouter.dev/release-of"
)

// ConfigMapName is the name of a service's release ConfigMap.
func ConfigMapName(service string) string { return service + "-release" }

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
	Paused   string     `json:"paused,omitempty"`
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
			s.BakeEnds = &end
		}
	case Manual:
		s.Waiting = fmt.Sprintf("a person: trackctl promote %s %s", spec.Service, st.Version)
	}
	return s, nil
}

// Words is the release in one line.
func (s *Status) Words(now time.Time) string {
	w := fmt.Sprintf("release %s: %s on %s since %s", s.Version, s.Phase, s.Stage, s.Since.UTC().Format(time.RFC3339))
	if s.BakeEnds != nil {
		if left := s.BakeEnds.Sub(now).Round(time.Second); left > 0 {
			w += fmt.Sprintf(", %s of bake left", left)
		} else {
			w += ", bake over (waiting for enough traffic)"
		}
	}
	if s.Waiting != "" {
		w += "; waiting for " + s.Waiting
	}
	if s.Paused != "" {
		w += "; PAUSED " + s.Paused
	}
	return w
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
