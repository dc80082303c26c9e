package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/types"
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

// TestMemoryReportDue: a problem about an object is said once per period,
// and what was said long ago is forgotten.
func TestMemoryReportDue(t *testing.T) {
	m := newMemory()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		uid  types.UID
		at   time.Duration
		want bool
	}{
		{"a", 0, true},
		{"a", time.Minute, false},
		{"b", time.Minute, true},
		{"a", reportEvery, true},
		{"a", reportEvery + time.Minute, false},
	} {
		if got := m.reportDue(step.uid, t0.Add(step.at), reportEvery); got != step.want {
			t.Errorf("%s at +%s: due %v, want %v", step.uid, step.at, got, step.want)
		}
	}
	m.reportDue("c", t0.Add(10*reportEvery), reportEvery)
	if len(m.reported) != 1 {
		t.Errorf("reports older than three periods kept: %v", m.reported)
	}
	if !m.newVerdict("s", "v1") || m.newVerdict("s", "v1") || !m.newVerdict("s", "v2") {
		t.Error("a verdict is new once, until another one")
	}
	m.forgetSpec("s")
	if !m.newVerdict("s", "v2") {
		t.Error("a deleted spec's verdict is forgotten")
	}
}
