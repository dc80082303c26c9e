package controller

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestRollout: a pod template change rolls one track at a time, in order,
// production last; what does not change the template is always written.
func TestRollout(t *testing.T) {
	order := []string{"canary", "internal", "paid", "production"}
	set := func(tracks ...string) map[string]bool {
		m := make(map[string]bool)
		for _, t := range tracks {
			m[t] = true
		}
		return m
	}
	for _, tc := range []struct {
		name              string
		changed, settling map[string]bool
		write             []string
		held              map[string]string
	}{
		{"at rest", nil, nil, order, nil},
		{"one change", set("paid"), nil, order, nil},
		{"every template changes: the first rolls, the rest wait for it", set(order...), nil,
			[]string{"canary"}, map[string]string{"internal": "canary", "paid": "canary", "production": "canary"}},
		{"an earlier track not Available holds a change", set("production"), set("internal"),
			[]string{"canary", "internal", "paid"}, map[string]string{"production": "internal"}},
		{"a settling track does not hold what does not change", nil, set("canary"), order, nil},
		{"a change waits for the nearest earlier roll", set("internal", "production"), set("canary"),
			[]string{"canary", "paid"}, map[string]string{"internal": "canary", "production": "canary"}},
		{"the last settled, production rolls", set("production"), nil, order, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write, held := rollout(order, tc.changed, tc.settling)
			if diff := cmp.Diff(tc.write, write); diff != "" {
				t.Errorf("written (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.held, held, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("held (-want +got):\n%s", diff)
			}
		})
	}
}
