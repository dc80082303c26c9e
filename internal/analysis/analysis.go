// Package analysis judges a canary stage from what HAProxy measured: the
// requests, errors and latencies of the stage's track beside those of the
// track it is compared with (the baseline, production on the same backend
// at the same time). Decide is a pure function: samples and time in, a
// verdict out (promote, wait or roll back) with its reason in words and
// numbers. It tests, not thresholds: a 5% canary of a small service sees a
// few requests a minute, where a fixed threshold flaps on noise.
package analysis

import (
	"fmt"
	"math"
	"time"

	"github.com/trackrouter/trackrouter/weights"
)

// Config is the analysis of one stage, as the spec's analysis: says it
// (see ConfigOf).
type Config struct {
	Bake     time.Duration // how long the stage runs under analysis before it may be promoted
	Interval time.Duration // how often it is judged
	// MinRequests is how many requests the canary must have served before
	// it may be promoted.
	MinRequests int64
	// MaxErrorIncrease is the largest increase of the error rate over the
	// baseline that is allowed, in percentage points.
	MaxErrorIncrease float64
	// MaxP95Increase and MaxP99Increase are the largest increases of the
	// 95th and 99th latency percentiles over the baseline's, in percent.
	MaxP95Increase, MaxP99Increase float64
	// LowTraffic is what a stage with fewer than MinRequests at the end of
	// its bake does: wait (the default: bake on), promote or rollback.
	LowTraffic string
	// FalseRollback is the chance allowed of rolling back a healthy stage,
	// over its whole bake; default 0.01.
	FalseRollback float64
}

// Defaults are the spec's defaults (weights.DefaultAnalysis), with 1% false
// rollbacks. A canary with 5 points more errors than allowed (+0.5) at
// one request a second is told apart in a median 1m30s, 95% of them in 4
// min; within 3 only a test that spent nearly all its false rollbacks at
// that one look could (BenchmarkSimulatedStages prints the ceiling).
var Defaults = ConfigOf(&weights.DefaultAnalysis)

// ConfigOf is the analysis a spec's stage asks for; nil means the defaults.
func ConfigOf(a *weights.Analysis) Config {
	if a == nil {
		a = &weights.DefaultAnalysis
	}
	return Config{Bake: a.Bake, Interval: a.Interval, MinRequests: int64(a.MinRequests), MaxErrorIncrease: a.MaxErrorIncrease,
		MaxP95Increase: a.MaxP95Increase, MaxP99Increase: a.MaxP99Increase, LowTraffic: a.LowTraffic, FalseRollback: 0.01}
}

// What a stage with too little traffic does at the end of its bake.
const (
	LowTrafficWait     = "wait"
	LowTrafficPromote  = "promote"
	LowTrafficRollback = "rollback"
)

// Sample is what a track served since the stage began, counted by every
// HAProxy pod of the service and summed.
type Sample struct {
	Requests int64 // responses and failed connections
	Errors   int64 // 5xx responses and connections that failed
	Latency  Histogram
	// Reset: a counter went backwards since the last sample (HAProxy or
	// its pod restarted): the counts since are not the stage's.
	Reset bool
}

// Action is a verdict.
type Action string

const (
	Promote  Action = "promote"
	Wait     Action = "wait"
	Rollback Action = "rollback"
)

// Verdict is a decision with its reason.
type Verdict struct {
	Action Action
	Reason string
	// LowTraffic: the verdict is the stage's lowTraffic rule (its bake is
	// over with fewer than MinRequests), not a finding.
	LowTraffic bool
	// Evidence is the numbers the verdict was reached on; nil when none
	// were tested (counters reset).
	Evidence *Evidence
}

// Evidence is what a look compared, for people to see beside the verdict
// (trackctl board draws it): the canary's errors against the rate they
// were tested against, and its p95 against the threshold.
type Evidence struct {
	CanaryRequests   int64 `json:"canaryRequests"`
	CanaryErrors     int64 `json:"canaryErrors"`
	BaselineRequests int64 `json:"baselineRequests"`
	BaselineErrors   int64 `json:"baselineErrors"`
	// AllowedErrors is the error rate (0-1) the canary's errors are tested
	// against: the baseline's at its upper bound, plus maxErrorIncrease.
	AllowedErrors float64 `json:"allowedErrors"`
	// The p95s in milliseconds: the canary's, the baseline's, and the
	// threshold (the baseline's at its upper bound, times 1 +
	// maxP95Increase%); AllowedP95 is 0 while p95 is not tested yet.
	CanaryP95   float64 `json:"canaryP95,omitempty"`
	BaselineP95 float64 `json:"baselineP95,omitempty"`
	AllowedP95  float64 `json:"allowedP95,omitempty"`
}

// Decide judges a stage elapsed into its bake from the canary's and the
// baseline's samples since the stage began. Each look tests three
// hypotheses (errors, p95, p99) at a level that keeps the chance of a false
// rollback over the whole bake below cfg.FalseRollback (see lookLevel): a
// breach is rolled back at once, with the evidence; a stage that held for
// its bake with enough traffic is promoted.
func Decide(cfg Config, canary, baseline Sample, elapsed time.Duration) Verdict {
	if canary.Reset || baseline.Reset {
		return Verdict{Action: Wait, Reason: "HAProxy's counters started again (a restart): the stage's measurements start again"}
	}
	ev := &Evidence{CanaryRequests: canary.Requests, CanaryErrors: canary.Errors, BaselineRequests: baseline.Requests, BaselineErrors: baseline.Errors}
	v := decide(cfg, canary, baseline, elapsed, ev)
	v.Evidence = ev
	return v
}

// finite is x, or 0 when it is no number (the quantile of no latency):
// Evidence is written as JSON, which has no NaN.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

func decide(cfg Config, canary, baseline Sample, elapsed time.Duration, ev *Evidence) Verdict {
	// The p95s as measured, whichever test decides (an error breach is
	// decided before latency is tested: its evidence still shows them).
	ev.CanaryP95, ev.BaselineP95 = finite(canary.Latency.Quantile(0.95)), finite(baseline.Latency.Quantile(0.95))
	errs := testErrors(cfg, canary, baseline, lookLevel(cfg, errorShare))
	ev.AllowedErrors = finite(errs.allowed)
	if errs.breach {
		return Verdict{Action: Rollback, Reason: errs.words}
	}
	summary := errs.words
	for _, q := range []struct {
		level, limit float64
	}{{0.95, cfg.MaxP95Increase}, {0.99, cfg.MaxP99Increase}} {
		lat := testLatency(q.level, q.limit, canary, baseline, lookLevel(cfg, latencyShare))
		if q.level == 0.95 {
			ev.AllowedP95 = finite(lat.allowed)
		}
		if lat.breach {
			return Verdict{Action: Rollback, Reason: lat.words}
		}
		summary += "; " + lat.words
	}
	if elapsed < cfg.Bake {
		return Verdict{Action: Wait, Reason: fmt.Sprintf("baking: %s of %s; %s", round(elapsed), round(cfg.Bake), summary)}
	}
	if canary.Requests < cfg.MinRequests {
		low := fmt.Sprintf("too little traffic: the canary served %d requests in %s, %d needed", canary.Requests, round(elapsed), cfg.MinRequests)
		switch cfg.LowTraffic {
		case LowTrafficPromote:
			return Verdict{Action: Promote, Reason: low + " (analysis: lowTraffic: promote); " + summary, LowTraffic: true}
		case LowTrafficRollback:
			return Verdict{Action: Rollback, Reason: low + " (analysis: lowTraffic: rollback); " + summary, LowTraffic: true}
		}
		return Verdict{Action: Wait, Reason: low + ": baking on; " + summary, LowTraffic: true}
	}
	return Verdict{Action: Promote, Reason: fmt.Sprintf("no breach in %s: %s", round(elapsed), summary)}
}

// lookLevel is the significance level of one test at one look, for a
// test given share of the false rollbacks allowed. The looks see the same
// requests again plus the new ones, so they are far from independent:
// Bonferroni (share/K for K looks) would be needlessly blind early on.
// share*(1+ln K)/K approximates Pocock's constant boundary for K
// cumulative looks; TestSimulatedStages and BenchmarkSimulatedStages check
// the false rollback rate it gives over whole bakes.
func lookLevel(cfg Config, share float64) float64 {
	looks := 1.0
	if cfg.Interval > 0 {
		looks = math.Max(1, math.Ceil(float64(cfg.Bake)/float64(cfg.Interval)))
	}
	fr := cfg.FalseRollback
	if fr <= 0 {
		fr = Defaults.FalseRollback
	}
	return calibration * fr * share * (1 + math.Log(looks)) / looks
}

// calibration scales the approximation above to the false rollbacks it
// really gives: alone, it spent a tenth of them (0.07% of 1% at the
// limit), so it saw bad builds later than it could. Calibrated on the
// simulation at the defaults (BenchmarkSimulatedStages), 4 spends most of
// the budget and no more: 0.78% at the limit, 0.72% on a busy service,
// 0.30% over a 1-hour low-traffic wait, 0.12% with latency at its limit;
// TestSimulatedStages holds each under 1%.
const calibration = 4

// The false rollbacks allowed, shared between the tests: errors are the
// most common breach and get half.
const (
	errorShare   = 0.5
	latencyShare = 0.25 // each of p95 and p99
)

// nuisance is the level of the bounds taken on the baseline (its error
// rate, its quantiles): the 90% upper bound. Tighter (99%, before the
// calibration) it moved the line the canary is tested against up by more
// than the baseline's uncertainty warrants at a 20-requests/s service, and
// a build with a few more errors went unseen longer; the calibration
// above is measured with it.
const nuisance = 0.1

// finding is one test's outcome in words.
type finding struct {
	breach bool
	words  string
	// allowed is what the canary was tested against (an error rate, a
	// latency threshold in ms); 0 when not tested.
	allowed float64
}

// testErrors tests whether the canary's error rate exceeds the baseline's
// by more than the limit: the baseline's rate is taken at its upper
// confidence bound plus the limit, and the canary's errors are compared
// with that rate by an exact binomial test.
func testErrors(cfg Config, canary, baseline Sample, alpha float64) finding {
	words := fmt.Sprintf("canary errors %s vs baseline %s", ratio(canary.Errors, canary.Requests), ratio(baseline.Errors, baseline.Requests))
	p0 := math.Min(1, upperBound(int(baseline.Errors), int(baseline.Requests), nuisance)+cfg.MaxErrorIncrease/100)
	if canary.Requests == 0 {
		return finding{words: words, allowed: p0}
	}
	p := binomialTail(int(canary.Errors), int(canary.Requests), p0)
	if p < alpha {
		ps, as := pvalues(p, alpha)
		return finding{true, fmt.Sprintf("%s: p %s < %s, limit +%g point%s", words, ps, as, cfg.MaxErrorIncrease, plural(cfg.MaxErrorIncrease)), p0}
	}
	return finding{words: words, allowed: p0}
}

// testLatency tests whether the canary's level-quantile exceeds the
// baseline's by more than limit percent: the baseline's quantile is taken
// at its upper confidence bound, the threshold is that times 1+limit/100,
// and the canary requests slower than the threshold are compared with the
// share a quantile allows (5% for p95) by an exact binomial test.
func testLatency(level, limit float64, canary, baseline Sample, alpha float64) finding {
	name := fmt.Sprintf("p%g", level*100)
	need := int64(math.Ceil(20 / (1 - level)))
	if baseline.Requests < need {
		return finding{words: fmt.Sprintf("%s not tested yet (the baseline has %d requests, %d needed)", name, baseline.Requests, need)}
	}
	base := baseline.Latency.QuantileUpper(level, nuisance)
	threshold := base * (1 + limit/100)
	slower := canary.Latency.CountAbove(threshold)
	words := fmt.Sprintf("canary %s %s vs baseline %s", name, ms(canary.Latency.Quantile(level)), ms(baseline.Latency.Quantile(level)))
	if canary.Requests == 0 {
		return finding{words: words, allowed: threshold}
	}
	p := binomialTail(int(slower), int(canary.Requests), 1-level)
	if p < alpha {
		ps, as := pvalues(p, alpha)
		return finding{true, fmt.Sprintf("%s: %d of %d canary requests slower than %s (baseline %s +%g%%), p %s < %s",
			words, slower, canary.Requests, ms(threshold), name, limit, ps, as), threshold}
	}
	return finding{words: words, allowed: threshold}
}

func ratio(x, n int64) string {
	if n == 0 {
		return "- (no request)"
	}
	return fmt.Sprintf("%.1f%% (%s/%s)", 100*float64(x)/float64(n), count(x), count(n))
}

// count writes 11480 as 11,480.
func count(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func pvalue(p float64) string {
	if p < 0.001 {
		return fmt.Sprintf("%.0e", p)
	}
	return fmt.Sprintf("%.3f", p)
}

// pvalues writes p and the level it is below, with as many digits as it
// takes for them to read differently ("p 0.0017 < 0.0019", not "p 0.002 <
// 0.002").
func pvalues(p, alpha float64) (string, string) {
	ps, as := pvalue(p), pvalue(alpha)
	for digits := 2; ps == as && digits <= 6; digits++ {
		ps, as = fmt.Sprintf("%.*g", digits, p), fmt.Sprintf("%.*g", digits, alpha)
	}
	return ps, as
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	if v >= 1000 {
		return fmt.Sprintf("%.2fs", v/1000)
	}
	return fmt.Sprintf("%.0fms", v)
}

func plural(v float64) string {
	if v == 1 {
		return ""
	}
	return "s"
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }
