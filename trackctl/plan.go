package trackctl

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/trackrouter/trackrouter/weights"
)

// planner turns the current spec into the edits of a release command,
// refusing a request that makes no sense for it. The planners below are
// the release commands' decisions, apart from reading and writing.
type planner func(s *weights.Spec) ([]edit, error)

// planDeploy puts version on the first stage (the first track the spec
// lists).
func planDeploy(version string) planner {
	return func(s *weights.Spec) ([]edit, error) {
		return []edit{{[]string{"tracks", s.Stages[0], "version"}, version}}, nil
	}
}

// planPromote puts version on the stage after the last one that runs it,
// or on the track to when it is given.
func planPromote(version, to string) planner {
	return func(s *weights.Spec) ([]edit, error) {
		if to != "" {
			if _, ok := s.Tracks[to]; !ok {
				return nil, fmt.Errorf("--to %s: service %s has no such track (stages: %s)", to, s.Service, strings.Join(s.Stages, ", "))
			}
			return []edit{{[]string{"tracks", to, "version"}, version}}, nil
		}
		last := -1
		for i, t := range s.Stages {
			if s.Tracks[t].Version == version {
				last = i
			}
		}
		switch {
		case last < 0:
			return nil, fmt.Errorf("version %s runs on no track of %s (%s): deploy it first", version, s.Service, stageWords(s))
		case last == len(s.Stages)-1:
			return nil, fmt.Errorf("version %s already runs on the last stage, %s (%s)", version, s.Stages[last], stageWords(s))
		}
		return []edit{{[]string{"tracks", s.Stages[last+1], "version"}, version}}, nil
	}
}

// weightArgs reads set-weight's TRACK=WEIGHT arguments, in their order.
func weightArgs(args []string) (order []string, weightOf map[string]string, err error) {
	weightOf = map[string]string{}
	for _, a := range args {
		track, w, ok := strings.Cut(a, "=")
		n, err := strconv.Atoi(w)
		if !ok || track == "" || err != nil {
			return nil, nil, usageError{fmt.Sprintf("%q: want TRACK=WEIGHT, e.g. canary=10", a)}
		}
		if _, dup := weightOf[track]; dup {
			return nil, nil, usageError{fmt.Sprintf("track %s is given twice", track)}
		}
		weightOf[track] = strconv.Itoa(n) // 010 and +5 are written 10 and 5
		order = append(order, track)
	}
	return order, weightOf, nil
}

// planSetWeight sets the weights of tracks already in backend.
func planSetWeight(backend string, order []string, weightOf map[string]string) planner {
	return func(s *weights.Spec) ([]edit, error) {
		b, ok := s.Backends[backend]
		if !ok {
			return nil, fmt.Errorf("service %s has no backend %s (backends: %s)", s.Service, backend, strings.Join(s.BackendNames(), ", "))
		}
		var edits []edit
		for _, track := range order {
			if _, ok := b[track]; !ok {
				return nil, fmt.Errorf("backend %s has no server for track %s (it has: %s): add it to the spec first", backend, track, strings.Join(b.Tracks(), ", "))
			}
			edits = append(edits, edit{[]string{"backends", backend, track}, weightOf[track]})
		}
		return edits, nil
	}
}

// planRollback sets track's weight to 0 in every backend that has it, and
// its version back when version is given. A backend that would have no
// track above 0 is refused.
func planRollback(track, version string) planner {
	return func(s *weights.Spec) ([]edit, error) {
		if _, ok := s.Tracks[track]; !ok {
			return nil, fmt.Errorf("service %s has no track %s (tracks: %s)", s.Service, track, strings.Join(s.Stages, ", "))
		}
		var edits []edit
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
			edits = append(edits, edit{[]string{"backends", name, track}, "0"})
		}
		if version != "" {
			edits = append(edits, edit{[]string{"tracks", track, "version"}, version})
		}
		return edits, nil
	}
}

func stageWords(s *weights.Spec) string {
	parts := make([]string, len(s.Stages))
	for i, t := range s.Stages {
		parts[i] = t + " " + s.Tracks[t].Version
	}
	return strings.Join(parts, ", ")
}
