package weights

import (
	"fmt"
	"strings"
)

// WeightChange is how one backend's weights differ between two specs.
type WeightChange struct {
	Backend string
	// Servers lists "track old->new" for each track whose weight changed; a
	// track added or removed shows "-" on the missing side.
	Servers []string
}

func (c WeightChange) String() string {
	return c.Backend + ": " + strings.Join(c.Servers, ", ")
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
			c.Servers = append(c.Servers, fmt.Sprintf("%s %s->%s", track, share(ob, ow, oOK), share(nb, nw, nOK)))
		}
		if len(c.Servers) > 0 {
			changes = append(changes, c)
		}
	}
	return changes
}

// share is a weight with the share of the backend's traffic it gives, since
// weights are relative: "5 (5.0%)".
func share(b Backend, w int, ok bool) string {
	if !ok {
		return "-"
	}
	total := 0
	for _, v := range b {
		total += v
	}
	if total == 0 {
		return fmt.Sprintf("%d (0%%)", w)
	}
	return fmt.Sprintf("%d (%.1f%%)", w, 100*float64(w)/float64(total))
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

// SpecChanges lists, as "field old->new", every change from old to new
// other than backend weights (WeightChanges): versions, replicas, groups,
// the default backend, the header, the port, the template, the HAProxy tier.
func SpecChanges(old, new *Spec) []string {
	var out []string
	add := func(field, o, n string) {
		if o != n {
			out = append(out, fmt.Sprintf("%s %s->%s", field, orDash(o), orDash(n)))
		}
	}
	add("service", old.Service, new.Service)
	add("port", fmt.Sprint(old.Port), fmt.Sprint(new.Port))
	add("header", old.Header, new.Header)
	add("template", old.Template, new.Template)
	add("router.replicas", fmt.Sprint(old.Router.Replicas), fmt.Sprint(new.Router.Replicas))
	for _, name := range union(old.TrackNames(), new.TrackNames()) {
		ot, oOK := old.Tracks[name]
		nt, nOK := new.Tracks[name]
		add("tracks."+name+".version", present(ot.Version, oOK), present(nt.Version, nOK))
		add("tracks."+name+".replicas", present(replicas(ot), oOK), present(replicas(nt), nOK))
		add("tracks."+name+".address", ot.Address, nt.Address)
	}
	for _, value := range union(old.GroupValues(), new.GroupValues()) {
		add("groups."+value, old.Groups[value], new.Groups[value])
	}
	add("default", old.Default, new.Default)
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
