package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
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
	// canaryRPS, when set, is the canary's requests per second (default
	// 5% of 20); hour looks on for an hour, as lowTraffic: wait does with a
	// canary that never reaches minRequests.
	canaryRPS float64
	hour      bool
	// fastMS, when set, is the median latency in ms instead of 50, and
	// latencies are whole milliseconds, cut down, as HAProxy logs them.
	fastMS float64
}

var (
	healthy   = scenario{"healthy", 0.001, 1, 0.001, 0, false, 0}
	moreErrs  = scenario{"+5 points of 5xx", 0.051, 1, 0.001, 0, false, 0}
	slowerP95 = scenario{"p95 x3", 0.001, 3, 0.001, 0, false, 0}
	// atLimit is the worst healthy case: as many more errors as allowed.
	atLimit = scenario{"errors at the limit", 0.001 + Defaults.MaxErrorIncrease/100, 1, 0.001, 0, false, 0}
	// atLimitHour: at the limit, too quiet to reach minRequests, looked at
	// every 30 s for an hour (120 looks).
	atLimitHour = scenario{"at the limit, 1 h low-traffic wait", 0.001 + Defaults.MaxErrorIncrease/100, 1, 0.001, 0.025, true, 0}
	twoPoints   = scenario{"+2 points of 5xx", 0.021, 1, 0.001, 0, false, 0}
	// atLimitBusy: at the limit on a busy service (10 canary requests/s).
	atLimitBusy = scenario{"at the limit, busy (10 canary req/s)", 0.001 + Defaults.MaxErrorIncrease/100, 1, 0.001, 10, false, 0}
	slower30    = scenario{"p95 +30%", 0.001, 1.3, 0.001, 0, false, 0}
	// slowerAtLimit: every latency 50% longer, so p95 and p99 exactly at
	// the default limits (+50%): the worst healthy case for latency.
	slowerAtLimit = scenario{"latency at the limit (p95, p99 +50%)", 0.001, 1 + Defaults.MaxP95Increase/100, 0.001, 0, false, 0}
	// zeroBase: a baseline with no error at all (Kayenta's blind spot)
	// and a canary with 3% errors.
	zeroBase = scenario{"zero-error baseline, canary 3%", 0.03, 1, 0, 0, false, 0}
	// moreErrsBusier: +5 points at 1.5 canary requests/s (a 7.5% share of
	// 20 requests/s): the traffic at which the analysis catches it within
	// 3 minutes in 95% of stages (see bestPossible for 1 request/s).
	moreErrsBusier = scenario{"+5 points of 5xx, 1.5 canary req/s", 0.051, 1, 0.001, 1.5, false, 0}
	// fast: a healthy service answering in under a millisecond (median
	// 0.6 ms), as HAProxy logs it: whole ms, mostly 0 and 1.
	fast = scenario{"healthy, sub-ms (HAProxy's whole ms)", 0.001, 1, 0.001, 0, false, 0.6}
)

// simBoundary is the plain sequential judge's boundary in the simulation
// ($TRACKROUTER_BOUNDARY; 0: Ville's 1/alpha).
var simBoundary = func() float64 {
	v, _ := strconv.ParseFloat(os.Getenv("TRACKROUTER_BOUNDARY"), 64)
	return v
}()

type simResult struct {
	stages                    int
	rollbacks, fixedRollbacks int
	detect, fixedDetect       []time.Duration // time to rollback of the stages rolled back
	promotions, waitsAtTheEnd int
	seqRollbacks, mwRollbacks int
	seqDetect, mwDetect       []time.Duration
	plainRollbacks            int
	plainDetect               []time.Duration
}

// compare: simulate runs the other judges too (the benchmark's table).
var compare bool

func simulate(stages int, seed uint64, sc scenario) simResult {
	const (
		rps      = 20.0
		share    = 0.05
		interval = 30 * time.Second
	)
	cfg := Defaults
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	median := 50.0
	if sc.fastMS > 0 {
		median = sc.fastMS
	}
	latency := func(factor float64) float64 {
		ms := factor * median * math.Exp(0.6*rng.NormFloat64())
		if sc.fastMS > 0 {
			ms = math.Floor(ms)
		}
		return ms
	}
	res := simResult{stages: stages}
	canaryRPS := rps * share
	if sc.canaryRPS > 0 {
		canaryRPS = sc.canaryRPS
	}
	end := cfg.Bake
	if sc.hour {
		end = time.Hour
	}
	for range stages {
		var canary, baseline Sample
		decided, fixedDone := false, false
		var seq Sequential
		plain := Sequential{Plain: true, Boundary: simBoundary}
		seqDone, mwDone, plainDone := false, false, false
		var mw kayenta
		for elapsed := interval; elapsed <= end; elapsed += interval {
			before, beforeBase := canary, baseline
			for range poisson(rng, canaryRPS*interval.Seconds()) {
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
			if compare && !seqDone {
				if breach, _ := seq.Judge(cfg, canary, baseline); breach {
					seqDone = true
					res.seqRollbacks++
					res.seqDetect = append(res.seqDetect, elapsed)
				}
			}
			if compare && !plainDone {
				if breach, _ := plain.Judge(cfg, canary, baseline); breach {
					plainDone = true
					res.plainRollbacks++
					res.plainDetect = append(res.plainDetect, elapsed)
				}
			}
			if compare && !mwDone && mw.look(before, canary, beforeBase, baseline) {
				mwDone = true
				res.mwRollbacks++
				res.mwDetect = append(res.mwDetect, elapsed)
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
				if !sc.hour || canary.Requests >= cfg.MinRequests {
					decided = true
					res.promotions++
				}
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

// kayenta is a Kayenta-style judge (its default NetflixACAJudge): each
// metric's values per interval, canary against baseline, compared by a
// Mann-Whitney U test at 98% confidence, a failure only when the canary is
// higher and the effect (the ratio of the means) is more than 1.25; here
// two metrics, the error rate and the p95 of each interval.
type kayenta struct {
	canaryErr, baseErr, canaryP95, baseP95 []float64
}

func (k *kayenta) look(before, canary, beforeBase, baseline Sample) bool {
	interval := func(a, b Sample) (errRate, p95 float64, ok bool) {
		n := b.Requests - a.Requests
		if n <= 0 {
			return 0, 0, false
		}
		var h Histogram
		for i := range h {
			h[i] = b.Latency[i] - a.Latency[i]
		}
		return float64(b.Errors-a.Errors) / float64(n), h.Quantile(0.95), true
	}
	if e, p, ok := interval(before, canary); ok {
		k.canaryErr, k.canaryP95 = append(k.canaryErr, e), append(k.canaryP95, p)
	}
	if e, p, ok := interval(beforeBase, baseline); ok {
		k.baseErr, k.baseP95 = append(k.baseErr, e), append(k.baseP95, p)
	}
	return mannWhitneyWorse(k.canaryErr, k.baseErr) || mannWhitneyWorse(k.canaryP95, k.baseP95)
}

// mannWhitneyWorse: the canary's values are higher than the baseline's at
// 98% (two-sided, normal approximation with ties), and their mean is more
// than 1.25 times the baseline's.
func mannWhitneyWorse(c, b []float64) bool {
	if len(c) < 3 || len(b) < 3 {
		return false
	}
	type v struct {
		x      float64
		canary bool
	}
	all := make([]v, 0, len(c)+len(b))
	for _, x := range c {
		all = append(all, v{x, true})
	}
	for _, x := range b {
		all = append(all, v{x, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].x < all[j].x })
	rankSum, ties := 0.0, 0.0
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].x == all[i].x {
			j++
		}
		r := float64(i+j+1) / 2
		t := float64(j - i)
		ties += t*t*t - t
		for k := i; k < j; k++ {
			if all[k].canary {
				rankSum += r
			}
		}
		i = j
	}
	n1, n2 := float64(len(c)), float64(len(b))
	u := rankSum - n1*(n1+1)/2
	mean := n1 * n2 / 2
	n := n1 + n2
	sd := math.Sqrt(n1 * n2 / 12 * (n + 1 - ties/(n*(n-1))))
	if sd == 0 {
		return false // every value the same (all zeros): nothing to tell
	}
	z := (u - mean) / sd
	if z < normalQuantile(0.99) {
		return false
	}
	mc, mb := meanOf(c), meanOf(b)
	return mb == 0 && mc > 0 || mb > 0 && mc/mb > 1.25
}

func meanOf(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
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

// table is the side-by-side line of one scenario: each judge's rollback
// rate and its time to rollback (median / p95).
func (r simResult) table(name string) string {
	col := func(n int, d []time.Duration) string {
		if n == 0 {
			return fmt.Sprintf("%6.2f%%         -", 0.0)
		}
		return fmt.Sprintf("%6.2f%% %4s/%-5s", 100*float64(n)/float64(r.stages), short(quantile(d, 0.5)), short(quantile(d, 0.95)))
	}
	return fmt.Sprintf("| %-36s | %s | %s | %s | %s | %s |", name, col(r.rollbacks, r.detect), col(r.seqRollbacks, r.seqDetect), col(r.plainRollbacks, r.plainDetect), col(r.fixedRollbacks, r.fixedDetect), col(r.mwRollbacks, r.mwDetect))
}

func short(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%.1fm", d.Minutes())
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
	for _, sc := range []scenario{healthy, atLimit, atLimitBusy, slowerAtLimit, atLimitHour, fast} {
		n := stages
		if sc.hour || sc.canaryRPS > 1 {
			n = stages / 4 // 120 looks each, or 10 times the requests
		}
		r := simulate(n, 1, sc)
		t.Logf("%s: %s", sc.name, r)
		if rate := float64(r.rollbacks) / float64(n); rate > 0.01 {
			t.Errorf("%s: %.2f%% of stages rolled back, want at most 1%%", sc.name, 100*rate)
		}
	}
	if h := simulate(stages/4, 3, healthy); h.promotions < h.stages*98/100 {
		t.Errorf("healthy canaries promoted: %d of %d", h.promotions, h.stages)
	}
	for _, sc := range []scenario{moreErrs, slowerP95, moreErrsBusier} {
		r := simulate(stages/4, 2, sc)
		t.Logf("%s: %s", sc.name, r)
		if r.rollbacks != r.stages {
			t.Errorf("%s: %d of %d stages rolled back, want all", sc.name, r.rollbacks, r.stages)
		}
		if median := quantile(r.detect, 0.5); median > 3*time.Minute {
			t.Errorf("%s: median time to rollback %s, want at most 3m", sc.name, median)
		}
		// p95 x3 within 2 minutes in 95% of stages; +5 points within 3
		// from 1.5 canary requests/s (at 1, see bestPossible).
		want := map[string]time.Duration{slowerP95.name: 2 * time.Minute, moreErrsBusier.name: 3 * time.Minute}[sc.name]
		if p95 := quantile(r.detect, 0.95); want > 0 && p95 > want {
			t.Errorf("%s: p95 time to rollback %s, want at most %s", sc.name, p95, want)
		}
	}
}

// bestPossible is the most stages with +5 points of errors that any test
// can roll back by the look at `by`, at a canary's rate of rps requests/s,
// if it may roll back at most a share alpha of stages exactly at the
// limit: the Neyman-Pearson test of the canary's errors counted by then,
// with the baseline's 0.1% known (no test that must estimate it does
// better), which spends all of alpha on that one look and never looks
// again (a test that also guards the rest of the bake has less to spend
// there). The canary's errors by then are Poisson: rps*by requests, each
// an error with the scenario's chance.
func bestPossible(rps float64, by time.Duration, alpha float64) float64 {
	n := rps * by.Seconds()
	atLimitMean, badMean := n*atLimit.canaryErrors, n*moreErrs.canaryErrors
	pmf := func(k int, mean float64) float64 {
		lg, _ := math.Lgamma(float64(k + 1))
		return math.Exp(float64(k)*math.Log(mean) - mean - lg)
	}
	tail := func(k int, mean float64) float64 { // P(X >= k)
		s := 1.0
		for i := range k {
			s -= pmf(i, mean)
		}
		return s
	}
	k := 0
	for tail(k, atLimitMean) > alpha {
		k++
	}
	// Randomized at k-1 to spend alpha exactly.
	g := (alpha - tail(k, atLimitMean)) / pmf(k-1, atLimitMean)
	return tail(k, badMean) + g*pmf(k-1, badMean)
}

// BenchmarkSimulatedStages prints, for 10,000 stages of each scenario, the
// rollback rate and the time to rollback of the analysis and of a fixed
// threshold on the same samples:
// go test ./internal/analysis -run '^$' -bench SimulatedStages -benchtime 1x
func BenchmarkSimulatedStages(b *testing.B) {
	compare = true
	fmt.Println("| scenario                             | today's test rolls back (median/p95) | sequential (spent) | sequential (plain) | fixed threshold | Kayenta-style Mann-Whitney |")
	for _, sc := range []scenario{healthy, fast, atLimit, atLimitHour, atLimitBusy, slowerAtLimit, moreErrs, moreErrsBusier, twoPoints, slowerP95, slower30, zeroBase} {
		r := simulate(4000, 7, sc)
		fmt.Println(r.table(sc.name))
	}
	for _, rps := range []float64{1, 1.5} {
		fmt.Printf("+5 points by 3m at %g canary req/s: at most %.1f%% of stages by any test with 1%% false rollbacks (%.1f%% with the errors' 0.5%%)\n",
			rps, 100*bestPossible(rps, 3*time.Minute, 0.01), 100*bestPossible(rps, 3*time.Minute, 0.005))
	}
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
