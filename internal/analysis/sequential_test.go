package analysis

import (
	"math"
)

// Sequential is an anytime-valid judge of a bake: its chance of rolling
// back a healthy canary stays below the budget however many looks it
// takes (a quiet canary that waits for an hour is looked at 120 times),
// where the level of each of today's looks is set for the bake's planned
// number of looks.
//
// Each test is an e-process: for "the canary's rate is at most p0" (p0
// the baseline's upper bound plus the limit, for errors; the share of
// requests a quantile allows, for latency), the mixture over a grid of
// excesses of the likelihood ratio of each look's new requests, p0 taken
// at the look's start. Under the null it is a nonnegative supermartingale,
// so by Ville's inequality it ever reaches 1/alpha with chance at most
// alpha (Lindon, Sanden, Shirikian, KDD 2022, for the idea; a grid
// mixture rather than their conjugate one, since p0 moves with the
// baseline). The baseline's bounds are taken at a level that shrinks with
// each look (alpha 6/(pi^2 t^2)): valid at every look at once.
type Sequential struct {
	// Plain takes the baseline's bounds at today's fixed level (nuisance)
	// at every look rather than at a level spent over the looks, and
	// gives the e-processes the whole budget: faster, its false rollbacks
	// checked on the simulation rather than proven.
	Plain bool
	// Boundary, when set, is the e-value that rolls back, for every test
	// (a boundary calibrated on the simulation, not Ville's 1/alpha).
	Boundary         float64
	Errors, P95, P99 EProcess
	Looks            int
	last             Sample // the canary at the last look
}

// EProcess is one test's mixture, by excess over p0, in logs.
type EProcess struct {
	LogW []float64 `json:"logw,omitempty"`
}

// excesses are the alternatives mixed: from a quarter of a point to 16
// points over p0, equally weighted.
var excesses = []float64{0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16}

// Observe adds k events in n trials under a null rate p0.
func (e *EProcess) Observe(k, n int64, p0 float64) {
	if n <= 0 {
		return
	}
	if e.LogW == nil {
		e.LogW = make([]float64, len(excesses))
	}
	p0 = math.Min(math.Max(p0, 1e-9), 1-1e-9)
	for j, d := range excesses {
		p1 := p0 + d
		if p1 >= 1 {
			continue
		}
		e.LogW[j] += float64(k)*math.Log(p1/p0) + float64(n-k)*math.Log((1-p1)/(1-p0))
	}
}

// Value is the e-value: the mixture's mean likelihood ratio.
func (e *EProcess) Value() float64 {
	if len(e.LogW) == 0 {
		return 1
	}
	s := 0.0
	for _, l := range e.LogW {
		s += math.Exp(l)
	}
	return s / float64(len(e.LogW))
}

// Judge takes one look at the cumulative samples and says whether a test
// found a breach (and which), at the shares of cfg.FalseRollback that
// Decide gives them.
func (q *Sequential) Judge(cfg Config, canary, baseline Sample) (breach bool, which string) {
	fr := cfg.FalseRollback
	if fr <= 0 {
		fr = Defaults.FalseRollback
	}
	q.Looks++
	t := float64(q.Looks)
	spend := 6 / (math.Pi * math.Pi * t * t) // sums to 1 over all looks
	errShare, latShare := 0.4, 0.2
	baseErr, baseLat := fr*0.1*spend, fr*0.05*spend
	if q.Plain {
		errShare, latShare = 0.5, 0.25
		baseErr, baseLat = nuisance, nuisance
	}
	// The canary's new requests since the last look, judged against
	// bounds from the baseline as it stands (other requests: they do not
	// depend on the canary's).
	newN := canary.Requests - q.last.Requests
	newErr := canary.Errors - q.last.Errors
	if baseline.Requests > 0 {
		p0 := math.Min(1, upperBound(int(baseline.Errors), int(baseline.Requests), baseErr)+cfg.MaxErrorIncrease/100)
		q.Errors.Observe(newErr, newN, p0)
		for _, x := range []struct {
			e     *EProcess
			level float64
			limit float64
		}{{&q.P95, 0.95, cfg.MaxP95Increase}, {&q.P99, 0.99, cfg.MaxP99Increase}} {
			need := int64(math.Ceil(20 / (1 - x.level)))
			if baseline.Requests < need {
				continue
			}
			threshold := baseline.Latency.QuantileUpper(x.level, baseLat) * (1 + x.limit/100)
			slower := canary.Latency.CountAbove(threshold) - q.last.Latency.CountAbove(threshold)
			x.e.Observe(slower, newN, 1-x.level)
		}
	}
	q.last = canary
	errB, latB := 1/(fr*errShare), 1/(fr*latShare)
	if q.Boundary > 0 {
		errB, latB = q.Boundary, q.Boundary*errShare/latShare
	}
	switch {
	case q.Errors.Value() >= errB:
		return true, "errors"
	case q.P95.Value() >= latB:
		return true, "p95"
	case q.P99.Value() >= latB:
		return true, "p99"
	}
	return false, ""
}
