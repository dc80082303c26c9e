package weights

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// WeightChange is how one backend's weights differ between two specs.
type WeightChange struct {
	Backend string `json:"backend"`
	// Servers lists each track whose weight changed.
	Servers []ServerChange `json:"servers"`
}

// ServerChange is one track's weight in a backend before and after; nil on
// the side where the track is not in the backend.
type ServerChange struct {
	Track string  `json:"track"`
	Old   *Weight `json:"old"`
	New   *Weight `json:"new"`
}

// Weight is a server weight with the share of its backend's requests it
// gives, in percent: weights are relative, so 5 means little alone.
type Weight struct {
	Weight int     `json:"weight"`
	Share  float64 `json:"share"`
}

func (w *Weight) String() string {
	if w == nil {
		return "none" // no such server: "canary none->1 (100.0%)", not "canary -->1"
	}
	return fmt.Sprintf("%d (%s)", w.Weight, Percent(w.Share))
}

// Percent formats a share: "5.0%", and "0%" for nothing.
func Percent(share float64) string {
	if share == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.1f%%", share)
}

func (c ServerChange) String() string { return fmt.Sprintf("%s %s->%s", c.Track, c.Old, c.New) }

func (c WeightChange) String() string {
	parts := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		parts[i] = s.String()
	}
	return c.Backend + ": " + strings.Join(parts, ", ")
}

// WeightChanges lists, backend by backend in sorted order, the weights that
// differ from old to new. Backends only in one spec are listed with every
// track.
func WeightChanges(old, new *Spec) []WeightChange {
	var changes []WeightChange
	for _, name := range union(old.BackendNames(), new.BackendNames()) {
		ob, nb := old.Backends[name], new.Backends[name]
		c := WeightChange{Backend: name}
		for _, track := range union(ob.Tracks(), nb.Tracks()) {
			ow, oOK := ob[track]
			nw, nOK := nb[track]
			if oOK && nOK && ow == nw {
				continue
			}
			c.Servers = append(c.Servers, ServerChange{Track: track, Old: ob.weight(track), New: nb.weight(track)})
		}
		if len(c.Servers) > 0 {
			changes = append(changes, c)
		}
	}
	return changes
}

// weight is a track's weight in b with its share, nil when b has no such track.
func (b Backend) weight(track string) *Weight {
	w, ok := b[track]
	if !ok {
		return nil
	}
	return &Weight{Weight: w, Share: b.Share(track)}
}

// Sum is the sum of b's weights.
func (b Backend) Sum() int {
	total := 0
	for _, v := range b {
		total += v
	}
	return total
}

// Share is the percentage of b's requests that track gets.
func (b Backend) Share(track string) float64 {
	total := b.Sum()
	if total == 0 {
		return 0
	}
	return math.Round(1000*float64(b[track])/float64(total)) / 10
}

// union merges two sorted lists without duplicates.
func union(a, b []string) []string {
	set := make(map[string]bool, len(a)+len(b))
	for _, s := range a {
		set[s] = true
	}
	for _, s := range b {
		set[s] = true
	}
	return sortedKeys(set)
}

// Change is one field of a spec before and after; "" is "not set".
type Change struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s->%s", c.Field, orDash(c.Old), orDash(c.New))
}

// SpecChanges lists every change from old to new other than backend weights
// (WeightChanges): versions, replicas, groups, the default backend, the
// header, the port, the template, the HAProxy tier.
func SpecChanges(old, new *Spec) []Change {
	var out []Change
	add := func(field, o, n string) {
		if o != n {
			out = append(out, Change{field, o, n})
		}
	}
	add("service", old.Service, new.Service)
	add("port", fmt.Sprint(old.Port), fmt.Sprint(new.Port))
	add("header", old.Header, new.Header)
	add("template", old.Template, new.Template)
	add("router.replicas", fmt.Sprint(old.Router.Replicas), fmt.Sprint(new.Router.Replicas))
	// The tracks' order is the release's path (deploy, promote, the pipeline).
	common := func(a, b *Spec) []string {
		var out []string
		for _, t := range a.Stages {
			if _, ok := b.Tracks[t]; ok {
				out = append(out, t)
			}
		}
		return out
	}
	if oo, no := strings.Join(common(old, new), " -> "), strings.Join(common(new, old), " -> "); oo != no {
		add("stages", strings.Join(old.Stages, " -> "), strings.Join(new.Stages, " -> "))
	}
	for _, name := range union(old.TrackNames(), new.TrackNames()) {
		ot, oOK := old.Tracks[name]
		nt, nOK := new.Tracks[name]
		add("tracks."+name+".version", present(ot.Version, oOK), present(nt.Version, nOK))
		add("tracks."+name+".replicas", present(replicas(ot), oOK), present(replicas(nt), nOK))
		add("tracks."+name+".address", ot.Address, nt.Address)
		if oOK && nOK {
			add("tracks."+name+".analysis", ot.Analysis.String(), nt.Analysis.String())
			og, ng := GateWords(ot.Gates), GateWords(nt.Gates)
			if og == ng && !equalJSON(ot.Gates, nt.Gates) {
				ng += " (a Job's spec changed)"
			}
			add("tracks."+name+".gates", og, ng)
		}
	}
	for _, value := range union(old.GroupValues(), new.GroupValues()) {
		add("groups."+value, old.Groups[value], new.Groups[value])
	}
	add("default", old.Default, new.Default)
	add("affinity", old.Affinity.String(), new.Affinity.String())
	add("trustedSources", old.TrustedWords(), new.TrustedWords())
	return out
}

func replicas(t Track) string {
	if t.Autoscaled {
		return AutoReplicas
	}
	return fmt.Sprint(t.Replicas)
}

func present(v string, ok bool) string {
	if !ok {
		return ""
	}
	return v
}

func orDash(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// ChangeWords is every change from old to new in words, the fields first
// and then the weights ("tracks.canary.version 1.0->1.1", "backends.free:
// canary 5 (5.0%)->50 (50.0%), ..."): what history entries, Events and the
// sidecar's log say of an edit.
func ChangeWords(old, new *Spec) []string {
	var out []string
	for _, c := range SpecChanges(old, new) {
		out = append(out, c.String())
	}
	for _, c := range WeightChanges(old, new) {
		out = append(out, "backends."+c.String())
	}
	return out
}
