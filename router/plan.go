package router

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/router/haproxy"
)

// Action is what it takes to bring HAProxy to the desired config.
type Action string

const (
	// ActNone: HAProxy runs the desired config, weights and map.
	ActNone Action = "none"
	// ActRuntime: HAProxy runs the desired structure; weights or map entries
	// differ and change through the Runtime API.
	ActRuntime Action = "runtime"
	// ActReload: HAProxy runs another structure (or none): reload.
	ActReload Action = "reload"
)

// Plan is the decision of one reconcile step, as plain data.
type Plan struct {
	Action  Action
	Why     string                        // for the log
	Weights map[haproxyconf.ServerKey]int // servers whose weight must change, to their new weight
	Groups  map[string]string             // the whole new map when it must change; nil otherwise
	Ready   []haproxyconf.ServerKey       // servers whose forced maintenance or drain must end
}

// plan compares what HAProxy runs with the desired rendering. It is the one
// place that decides between nothing, a runtime update and a reload.
func plan(obs haproxy.Observed, want *haproxyconf.Rendered) Plan {
	if obs.Stamp != want.Stamp {
		why := fmt.Sprintf("HAProxy runs %s, the spec renders %s", orNone(obs.Stamp), want.Stamp)
		if !strings.HasPrefix(obs.Stamp, haproxyconf.StampPrefix) {
			why = "first config: HAProxy runs " + orNone(obs.Stamp)
		}
		return Plan{Action: ActReload, Why: why}
	}
	p := Plan{Action: ActNone, Why: "HAProxy runs the spec"}
	var parts []string
	for _, k := range slices.SortedFunc(maps.Keys(want.Weights), cmpKey) {
		if got, ok := obs.Weights[k]; !ok || got != want.Weights[k] {
			if p.Weights == nil {
				p.Weights = make(map[haproxyconf.ServerKey]int)
			}
			p.Weights[k] = want.Weights[k]
			parts = append(parts, fmt.Sprintf("%s %s->%d", k, weightOrDash(obs.Weights, k), want.Weights[k]))
		}
	}
	if len(parts) > 0 {
		parts[0] = "weights " + parts[0]
	}
	if want.Groups != nil && !maps.Equal(obs.Groups, want.Groups) {
		p.Groups = want.Groups
		var g []string
		for _, k := range slices.Sorted(maps.Keys(want.Groups)) {
			if obs.Groups[k] != want.Groups[k] {
				g = append(g, fmt.Sprintf("%s %s->%s", k, orDash(obs.Groups[k]), want.Groups[k]))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(obs.Groups)) {
			if _, ok := want.Groups[k]; !ok {
				g = append(g, fmt.Sprintf("%s %s->none", k, obs.Groups[k]))
			}
		}
		g[0] = "groups " + g[0]
		parts = append(parts, g...)
	}
	for _, k := range slices.SortedFunc(maps.Keys(obs.Forced), cmpKey) {
		if _, ours := want.Weights[k]; ours && obs.Forced[k] {
			p.Ready = append(p.Ready, k)
			parts = append(parts, fmt.Sprintf("%s forced maint/drain->ready", k))
		}
	}
	if len(parts) > 0 {
		p.Action, p.Why = ActRuntime, strings.Join(parts, ", ")
	}
	return p
}

func cmpKey(a, b haproxyconf.ServerKey) int { return strings.Compare(a.String(), b.String()) }

func weightOrDash(w map[haproxyconf.ServerKey]int, k haproxyconf.ServerKey) string {
	if v, ok := w[k]; ok {
		return fmt.Sprint(v)
	}
	return "none"
}

func orDash(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func orNone(stamp string) string {
	if stamp == "" {
		return "no stamped config"
	}
	return stamp
}
