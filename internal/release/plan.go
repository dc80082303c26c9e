// Package release holds the decisions of the release commands (deploy,
// promote, set-weight, rollback) as edits of a spec's text, apart from
// reading and writing it, and the history they record: trackctl's
// commands and track-controller's pipeline make their changes with the
// same code.
package release

import (
	"fmt"
	"strings"

	"github.com/trackrouter/trackrouter/weights"
)

// Planner turns the current spec into the edits of a release command,
// refusing a request that makes no sense for it. The planners below are
// the release commands' decisions, apart from reading and writing.
type Planner func(s *weights.Spec) ([]Edit, error)

// Deploy puts version on the first stage (the first track the spec
// lists).
func Deploy(version string) Planner {
	return func(s *weights.Spec) ([]Edit, error) {
		return []Edit{{[]string{"tracks", s.Stages[0], "version"}, version}}, nil
	}
}

// Promote puts version on the stage after the last one that runs it,
// or on the track to when it is given.
func Promote(version, to string) Planner {
	return func(s *weights.Spec) ([]Edit, error) {
		if to != "" {
			if _, ok := s.Tracks[to]; !ok {
				return nil, fmt.Errorf("--to %s: service %s has no such track (stages: %s)", to, s.Service, strings.Join(s.Stages, ", "))
			}
			return []Edit{{[]string{"tracks", to, "version"}, version}}, nil
		}
		last := -1
		for i, t := range s.Stages {
			if s.Tracks[t].Version == version {
				last = i
			}
		}
		switch {
		case last < 0:
			return nil, fmt.Errorf("version %s runs on no track of %s (%s): deploy it first", version, s.Service, StageWords(s))
		case last == len(s.Stages)-1:
			return nil, fmt.Errorf("version %s already runs on the last stage, %s (%s)", version, s.Stages[last], StageWords(s))
		}
		return []Edit{{[]string{"tracks", s.Stages[last+1], "version"}, version}}, nil
	}
}

// SetWeight sets the weights of tracks already in backend.
func SetWeight(backend string, order []string, weightOf map[string]string) Planner {
	return func(s *weights.Spec) ([]Edit, error) {
		b, ok := s.Backends[backend]
		if !ok {
			return nil, fmt.Errorf("service %s has no backend %s (backends: %s)", s.Service, backend, strings.Join(s.BackendNames(), ", "))
		}
		var edits []Edit
		for _, track := range order {
			if _, ok := b[track]; !ok {
				return nil, fmt.Errorf("backend %s has no server for track %s (it has: %s): add it to the spec first", backend, track, strings.Join(b.Tracks(), ", "))
			}
			edits = append(edits, Edit{[]string{"backends", backend, track}, weightOf[track]})
		}
		return edits, nil
	}
}

// Rollback sets track's weight to 0 in every backend that has it, and
// its version back when version is given. A backend that would have no
// track above 0 is refused.
func Rollback(track, version string) Planner {
	return func(s *weights.Spec) ([]Edit, error) {
		if _, ok := s.Tracks[track]; !ok {
			return nil, fmt.Errorf("service %s has no track %s (tracks: %s)", s.Service, track, strings.Join(s.Stages, ", "))
		}
		var edits []Edit
		for _, name := range s.BackendNames() {
			b := s.Backends[name]
			if _, ok := b[track]; !ok {
				continue
			}
			live := 0
			for t, w := range b {
				if t != track && w > 0 {
					live++
				}
			}
			if live == 0 {
				return nil, fmt.Errorf("backend %s would have no track with a weight above 0 without %s: give another track weight first (trackctl set-weight %s %s TRACK=W)", name, track, s.Service, name)
			}
			edits = append(edits, Edit{[]string{"backends", name, track}, "0"})
		}
		if version != "" {
			edits = append(edits, Edit{[]string{"tracks", track, "version"}, version})
		}
		return edits, nil
	}
}

func StageWords(s *weights.Spec) string {
	parts := make([]string, len(s.Stages))
	for i, t := range s.Stages {
		parts[i] = t + " " + s.Tracks[t].Version
	}
	return strings.Join(parts, ", ")
}
