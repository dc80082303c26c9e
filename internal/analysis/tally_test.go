package analysis

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
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
		{"a pod first read later counts from that read", []read{
			{[]PodCounts{p("a", "1", 100, 0)}, Counts{}, false},
			{[]PodCounts{p("a", "1", 110, 0), p("c", "1", 7, 1)}, Counts{10, 0}, false},
			{[]PodCounts{p("a", "1", 120, 0), p("c", "1", 9, 2)}, Counts{22, 1}, false},
		}},
		{"a pod that missed the first read: its earlier counts are not the stage's", []read{
			{[]PodCounts{p("a", "1", 5000, 0)}, Counts{}, false},
			{[]PodCounts{p("a", "1", 5010, 0), p("b", "1", 4000, 400)}, Counts{10, 0}, false},
			{[]PodCounts{p("a", "1", 5020, 0), p("b", "1", 4010, 400)}, Counts{30, 0}, false},
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
				s := tally.Observe(r.pods)
				if diff := cmp.Diff(r.want, Counts{s.Requests, s.Errors}); diff != "" || s.Reset != r.reset {
					t.Errorf("read %d: reset %v (want %v), counts (-want +got):\n%s", i, s.Reset, r.reset, diff)
				}
			}
		})
	}
}

func TestTallyLatency(t *testing.T) {
	h := func(ms ...float64) (h Histogram) {
		for _, v := range ms {
			h.Observe(v)
		}
		return h
	}
	var tally Tally
	tally.Observe([]PodCounts{{Pod: "a", Worker: "1", LatencyEpoch: "s1", Latency: h(10, 10)}})
	// A reload (new worker) keeps the sidecar's histogram going.
	s := tally.Observe([]PodCounts{{Pod: "a", Worker: "2", LatencyEpoch: "s1", Latency: h(10, 10, 20)}})
	if got := s.Latency.Total(); got != 1 || !s.Reset {
		t.Errorf("after a reload: %d latencies (want 1), reset %v (want true)", got, s.Reset)
	}
	// The sidecar restarts: its histogram starts empty, nothing is lost
	// of what was read, and the counts are not reset by it.
	s = tally.Observe([]PodCounts{{Pod: "a", Worker: "2", LatencyEpoch: "s2", Latency: h(30)}})
	if got := s.Latency.Total(); got != 2 || s.Reset {
		t.Errorf("after a sidecar restart: %d latencies (want 2), reset %v (want false)", got, s.Reset)
	}
	if q := s.Latency.Quantile(0.99); q < 20 || q > 36 {
		t.Errorf("p99 %v, want about 30", q)
	}
}

// TestTallyNoPod: a read of no pod (none answered, none reports) is
// nothing served, not a crash.
func TestTallyNoPod(t *testing.T) {
	var tally Tally
	if s := tally.Observe(nil); s.Requests != 0 || s.Errors != 0 || s.Latency.Total() != 0 {
		t.Errorf("%+v", s)
	}
	tally.Observe([]PodCounts{{Pod: "a", Worker: "1", Requests: 10}})
	if s := tally.Observe(nil); s.Requests != 0 {
		t.Errorf("a pod not read keeps its counts since the start: %+v", s)
	}
}

// TestTallyWrittenDown: a Tally written down (as JSON, in the release
// state) after any read and restored counts on exactly as the one that
// was never written down, across reloads, pods that come and go and
// latency epochs: a new leader judges from the stage's start.
func TestTallyWrittenDown(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := 0; run < 200; run++ {
		var kept Tally
		type pod struct {
			worker, epoch int
			req, errs     int64
			lat           Histogram
		}
		pods := map[string]*pod{"a": {}, "b": {}, "c": {}}
		reads := 2 + rng.IntN(12)
		cut := rng.IntN(reads)
		var restored *Tally
		for i := 0; i < reads; i++ {
			var now []PodCounts
			for _, name := range []string{"a", "b", "c"} {
				p := pods[name]
				switch rng.IntN(10) {
				case 0: // a reload: the worker counts from 0
					p.worker++
					p.req, p.errs = 0, 0
				case 1: // the sidecar restarted: a new latency epoch
					p.epoch++
					p.lat = Histogram{}
				}
				n := int64(rng.IntN(50))
				p.req += n
				p.errs += int64(rng.IntN(int(n) + 1))
				for range n {
					p.lat.Observe(rng.Float64() * 300)
				}
				if rng.IntN(6) == 0 {
					continue // not read this time
				}
				now = append(now, PodCounts{Pod: name, Worker: fmt.Sprint(p.worker), Requests: p.req, Errors: p.errs, LatencyEpoch: fmt.Sprint(p.epoch), Latency: p.lat})
			}
			want := kept.Observe(now)
			if restored != nil {
				if got := restored.Observe(now); !cmp.Equal(want, got) {
					t.Fatalf("run %d, read %d: restored after read %d says %+v, the kept one %+v", run, i, cut, got, want)
				}
			}
			if i == cut {
				b, err := json.Marshal(kept.State())
				if err != nil {
					t.Fatal(err)
				}
				var st TallyState
				if err := json.Unmarshal(b, &st); err != nil {
					t.Fatal(err)
				}
				r := RestoreTally(st)
				restored = &r
			}
		}
	}
}
