package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// The analysis against simulated stages: 20 requests/s on the backend, 5%
// of them to the canary, judged every 30 s over a 10 min bake, latencies
// log-normal (median 50 ms). Beside Decide, a fixed threshold judges the
// same samples: a rollback once the canary's error rate is more than 1
// point over the baseline's, or its p95 more than 50% over.

type scenario struct {
	name          string
	canaryErrors  float64 // error rate
	canarySlower  float64 // latency factor
	baselineError float64
}

var (
	healthy   = scenario{"healthy", 0.001, 1, 0.001}
	moreErrs  = scenario{"+5 points of 5xx", 0.051, 1, 0.001}
	slowerP95 = scenario{"p95 x3", 0.001, 3, 0.001}
	// atLimit is the worst healthy case: as many more errors as allowed.
	atLimit = scenario{"errors at the limit", 0.001 + Defaults.MaxErrorIncrease/100, 1, 0.001}
)

type simResult struct {
	stages                    int
	rollbacks, fixedRollbacks int
	detect, fixedDetect       []time.Duration // time to rollback of the stages rolled back
	promotions, waitsAtTheEnd int
}

func simulate(stages int, seed uint64, sc scenario) simResult {
	const (
		rps      = 20.0
		share    = 0.05
		interval = 30 * time.Second
	)
	cfg := Defaults
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	latency := func(factor float64) float64 { return factor * 50 * math.Exp(0.6*rng.NormFloat64()) }
	res := simResult{stages: stages}
	for range stages {
		var canary, baseline Sample
		decided, fixedDone := false, false
		for elapsed := interval; elapsed <= cfg.Bake; elapsed += interval {
			for range poisson(rng, rps*share*interval.Seconds()) {
				canary.Requests++
				if rng.Float64() < sc.canaryErrors {
					canary.Errors++
				}
				canary.Latency.Observe(latency(sc.canarySlower))
			}
			for range poisson(rng, rps*(1-share)*interval.Seconds()) {
				baseline.Requests++
				if rng.Float64() < sc.baselineError {
					baseline.Errors++
				}
				baseline.Latency.Observe(latency(1))
			}
			if !fixedDone && fixedThreshold(canary, baseline) {
				fixedDone = true
				res.fixedRollbacks++
				res.fixedDetect = append(res.fixedDetect, elapsed)
			}
			if decided {
				continue
			}
			switch v := Decide(cfg, canary, baseline, elapsed); v.Action {
			case Rollback:
				decided = true
				res.rollbacks++
				res.detect = append(res.detect, elapsed)
			case Promote:
				decided = true
				res.promotions++
			}
		}
		if !decided {
			res.waitsAtTheEnd++
		}
	}
	return res
}

// fixedThreshold is what a threshold-based tool does at each look.
func fixedThreshold(canary, baseline Sample) bool {
	if canary.Requests == 0 || baseline.Requests == 0 {
		return false
	}
	cr := float64(canary.Errors) / float64(canary.Requests)
	br := float64(baseline.Errors) / float64(baseline.Requests)
	return cr > br+0.01 || canary.Latency.Quantile(0.95) > 1.5*baseline.Latency.Quantile(0.95)
}

// poisson draws from a Poisson distribution (Knuth's method below 30, a
// rounded normal above).
func poisson(rng *rand.Rand, mean float64) int {
	if mean > 30 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// quantile of durations (q in 0..1); 0 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)]
}

func (r simResult) String() string {
	return fmt.Sprintf("%d stages: analysis rolls back %.2f%% (median %s, p95 %s, max %s), promotes %.2f%%; fixed threshold rolls back %.2f%% (median %s)",
		r.stages, 100*float64(r.rollbacks)/float64(r.stages), quantile(r.detect, 0.5), quantile(r.detect, 0.95), quantile(r.detect, 1),
		100*float64(r.promotions)/float64(r.stages), 100*float64(r.fixedRollbacks)/float64(r.stages), quantile(r.fixedDetect, 0.5))
}

// TestSimulatedStages: on healthy canaries, and on canaries with as many
// more errors as the limit allows, at most 1% of stages are rolled back; a
// canary with 5 points more 5xx, or with p95 three times the baseline, at
// a 5% share of 20 requests/s, is rolled back in a median of at most 3
// minutes, and always within the bake. The seed is fixed: the same numbers
// on every machine (BenchmarkSimulatedStages runs 10,000 of each).
func TestSimulatedStages(t *testing.T) {
	const stages = 1000
	for _, sc := range []scenario{healthy, atLimit} {
		r := simulate(stages, 1, sc)
		t.Logf("%s: %s", sc.name, r)
		if rate := float64(r.rollbacks) / stages; rate > 0.01 {
			t.Errorf("%s: %.2f%% of stages rolled back, want at most 1%%", sc.name, 100*rate)
		}
	}
	if h := simulate(stages/4, 3, healthy); h.promotions < h.stages*98/100 {
		t.Errorf("healthy canaries promoted: %d of %d", h.promotions, h.stages)
	}
	for _, sc := range []scenario{moreErrs, slowerP95} {
		r := simulate(stages/4, 2, sc)
		t.Logf("%s: %s", sc.name, r)
		if r.rollbacks != r.stages {
			t.Errorf("%s: %d of %d stages rolled back, want all", sc.name, r.rollbacks, r.stages)
		}
		if median := quantile(r.detect, 0.5); median > 3*time.Minute {
			t.Errorf("%s: median time to rollback %s, want at most 3m", sc.name, median)
		}
	}
}

// BenchmarkSimulatedStages prints, for 10,000 stages of each scenario, the
// rollback rate and the time to rollback of the analysis and of a fixed
// threshold on the same samples:
// go test ./internal/analysis -run '^$' -bench SimulatedStages -benchtime 1x
func BenchmarkSimulatedStages(b *testing.B) {
	for _, sc := range []scenario{healthy, atLimit, moreErrs, slowerP95} {
		b.Run(sc.name, func(b *testing.B) {
			for range b.N {
				r := simulate(10000, 7, sc)
				b.ReportMetric(100*float64(r.rollbacks)/float64(r.stages), "%rollback")
				b.ReportMetric(100*float64(r.fixedRollbacks)/float64(r.stages), "%fixed-rollback")
				b.ReportMetric(quantile(r.detect, 0.95).Seconds(), "s-p95-detect")
				fmt.Printf("%s: %s\n", sc.name, r)
			}
		})
	}
}
