package analysis

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTally(t *testing.T) {
	type read struct {
		pods  []PodCounts
		want  Counts
		reset bool
	}
	p := func(pod, worker string, req, errs int64) PodCounts {
		return PodCounts{Pod: pod, Worker: worker, Requests: req, Errors: errs}
	}
	for _, tc := range []struct {
		name  string
		reads []read
	}{
		{"two pods from the stage's start", []read{
			{[]PodCounts{p("a", "1", 100, 1), p("b", "1", 50, 0)}, Counts{}, false},
			{[]PodCounts{p("a", "1", 130, 2), p("b", "1", 70, 0)}, Counts{50, 1}, false},
		}},
		{"a reload: the old worker's counts kept, the new one's added from 0", []read{
			{[]PodCounts{p("a", "1", 100, 1)}, Counts{}, false},
			{[]PodCounts{p("a", "1", 120, 1)}, Counts{20, 0}, false},
			{[]PodCounts{p("a", "2", 5, 1)}, Counts{25, 1}, true},
			{[]PodCounts{p("a", "2", 15, 1)}, Counts{35, 1}, false},
		}},
		{"counters backwards with the same worker name: a reset", []read{
			{[]PodCounts{p("a", "1", 100, 0)}, Counts{}, false},
			{[]PodCounts{p("a", "1", 3, 0)}, Counts{3, 0}, true},
		}},
		{"a pod born during the stage counts from 0", []read{
			{[]PodCounts{p("a", "1", 100, 0)}, Counts{}, false},
			{[]PodCounts{p("a", "1", 110, 0), p("c", "1", 7, 1)}, Counts{17, 1}, false},
		}},
		{"a pod gone keeps what it counted", []read{
			{[]PodCounts{p("a", "1", 100, 0), p("b", "1", 10, 0)}, Counts{}, false},
			{[]PodCounts{p("a", "1", 110, 0), p("b", "1", 14, 1)}, Counts{14, 1}, false},
			{[]PodCounts{p("a", "1", 120, 0)}, Counts{24, 1}, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tally Tally
			for i, r := range tc.reads {
				got, reset := tally.Observe(r.pods)
				if diff := cmp.Diff(r.want, got); diff != "" || reset != r.reset {
					t.Errorf("read %d: reset %v (want %v), counts (-want +got):\n%s", i, reset, r.reset, diff)
				}
			}
		})
	}
}
