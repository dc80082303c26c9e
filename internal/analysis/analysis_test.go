package analysis

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestBinomialTail(t *testing.T) {
	for _, tc := range []struct {
		k, n int
		p    float64
		want float64
	}{
		{0, 10, 0.5, 1},
		{11, 10, 0.5, 0},
		{10, 10, 0.5, 1.0 / 1024},
		{5, 10, 0.5, 638.0 / 1024},                  // 1 - P(X<=4) = 1 - 386/1024
		{3, 100, 0.01, 0.0793732},                   // P(X>=3), Binomial(100, 0.01)
		{9, 180, 0.011, 0.000194998},                // the +5 point canary after 3 minutes
		{1, 1000, 0.001, 1 - math.Pow(0.999, 1000)}, // P(X>=1)
	} {
		got := binomialTail(tc.k, tc.n, tc.p)
		if math.Abs(got-tc.want) > 1e-6+1e-2*tc.want {
			t.Errorf("P(X>=%d | n=%d, p=%g) = %g, want %g", tc.k, tc.n, tc.p, got, tc.want)
		}
	}
}

func TestUpperBound(t *testing.T) {
	// Wilson's upper 97.5% bound of 0 in 100 is about 3.7%; of 12 in 11,480, about 0.18%.
	if got := upperBound(0, 100, 0.025); math.Abs(got-0.037) > 0.001 {
		t.Errorf("0/100: %g", got)
	}
	if got := upperBound(12, 11480, 0.025); got < 0.00105 || got > 0.0019 {
		t.Errorf("12/11480: %g", got)
	}
	if got := upperBound(0, 0, 0.05); got != 1 {
		t.Errorf("no data: %g", got)
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for i := 1; i <= 100; i++ {
		h.Observe(float64(i)) // 1..100 ms
	}
	if q := h.Quantile(0.95); q < 95 || q > 95*growth {
		t.Errorf("p95 of 1..100 ms: %g", q)
	}
	if n := h.CountAbove(200); n != 0 {
		t.Errorf("above 200 ms: %d", n)
	}
	if n := h.CountAbove(50); n < 40 || n > 51 {
		t.Errorf("surely above 50 ms: %d (never more than the 50 that are)", n)
	}
	if up := h.QuantileUpper(0.95, 0.01); up < h.Quantile(0.95) {
		t.Errorf("an upper bound below the estimate: %g < %g", up, h.Quantile(0.95))
	}
}

// sample builds a Sample of n requests with errs errors, latencies spread
// evenly between lo and hi ms.
func sample(n, errs int64, lo, hi float64) Sample {
	s := Sample{Requests: n, Errors: errs}
	for i := int64(0); i < n; i++ {
		s.Latency.Observe(lo + (hi-lo)*float64(i)/float64(max(n-1, 1)))
	}
	return s
}

func TestDecide(t *testing.T) {
	cfg := Defaults
	baseline := sample(11480, 12, 20, 100)
	for _, tc := range []struct {
		name      string
		cfg       Config
		canary    Sample
		baseline  Sample
		elapsed   time.Duration
		action    Action
		reasonHas []string
	}{
		{"healthy, baking", cfg, sample(300, 0, 20, 100), baseline, 5 * time.Minute, Wait,
			[]string{"baking: 5m0s of 10m0s", "canary errors 0.0% (0/300) vs baseline 0.1% (12/11,480)", "canary p95", "canary p99"}},
		{"healthy, baked: promote", cfg, sample(604, 1, 20, 100), baseline, 10 * time.Minute, Promote,
			[]string{"no breach in 10m0s", "canary errors 0.2% (1/604)"}},
		{"5xx breach: roll back at once", cfg, sample(604, 29, 20, 100), baseline, 2 * time.Minute, Rollback,
			[]string{"canary errors 4.8% (29/604) vs baseline 0.1% (12/11,480): p ", "limit +0.5 points"}},
		{"a few errors more, within the limit", cfg, sample(604, 4, 20, 100), baseline, 10 * time.Minute, Promote, nil},
		{"p95 three times the baseline", cfg, sample(300, 0, 60, 300), baseline, 3 * time.Minute, Rollback,
			[]string{"canary requests slower than", "baseline p95 +50%"}},
		{"too little traffic: wait", cfg, sample(45, 0, 20, 100), baseline, 10 * time.Minute, Wait,
			[]string{"too little traffic: the canary served 45 requests in 10m0s, 100 needed: baking on"}},
		{"too little traffic: promote when told", withLow(cfg, LowTrafficPromote), sample(45, 0, 20, 100), baseline, 10 * time.Minute, Promote,
			[]string{"analysis: lowTraffic: promote"}},
		{"too little traffic: roll back when told", withLow(cfg, LowTrafficRollback), sample(45, 0, 20, 100), baseline, 10 * time.Minute, Rollback,
			[]string{"analysis: lowTraffic: rollback"}},
		{"no canary request yet", cfg, Sample{}, baseline, time.Minute, Wait, []string{"canary errors - (no request)"}},
		{"a small baseline: no latency test yet", cfg, sample(300, 0, 200, 900), sample(300, 0, 20, 100), 5 * time.Minute, Wait,
			[]string{"p95 not tested yet (the baseline has 300 requests, 400 needed)", "p99 not tested yet"}},
		{"counters reset: no verdict", cfg, Sample{Requests: 10, Errors: 10, Reset: true}, baseline, 9 * time.Minute, Wait,
			[]string{"HAProxy's counters started again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide(tc.cfg, tc.canary, tc.baseline, tc.elapsed)
			if v.Action != tc.action {
				t.Errorf("action %s, want %s: %s", v.Action, tc.action, v.Reason)
			}
			for _, w := range tc.reasonHas {
				if !strings.Contains(v.Reason, w) {
					t.Errorf("reason %q lacks %q", v.Reason, w)
				}
			}
		})
	}
}

func withLow(c Config, low string) Config { c.LowTraffic = low; return c }

func TestPValuesReadApart(t *testing.T) {
	for _, tc := range []struct {
		p, alpha float64
		want     string
	}{
		{0.00172, 0.00188, "0.0017 < 0.0019"},
		{1e-7, 0.002, "1e-07 < 0.002"},
		{0.0101, 0.0102, "0.0101 < 0.0102"},
	} {
		ps, as := pvalues(tc.p, tc.alpha)
		if got := ps + " < " + as; got != tc.want {
			t.Errorf("pvalues(%g, %g) = %q, want %q", tc.p, tc.alpha, got, tc.want)
		}
	}
}

// TestEvidenceIsJSON: a look's evidence is written into the release state
// as JSON, which has no NaN: a canary with no latency yet, or no request
// at all, still gives evidence that can be written (it once stopped every
// judgement after a bake's first look).
func TestEvidenceIsJSON(t *testing.T) {
	for _, tc := range []struct {
		name             string
		canary, baseline Sample
	}{
		{"no request", Sample{}, Sample{}},
		{"requests, no latency", Sample{Requests: 30, Errors: 1}, Sample{Requests: 600}},
	} {
		v := Decide(Defaults, tc.canary, tc.baseline, time.Minute)
		if v.Evidence == nil {
			t.Fatalf("%s: no evidence", tc.name)
		}
		if _, err := json.Marshal(v.Evidence); err != nil {
			t.Errorf("%s: %v (%+v)", tc.name, err, *v.Evidence)
		}
	}
}

// TestErrorBreachShowsLatency: a rollback for errors is decided before
// latency is tested; its evidence still holds both p95s as measured (the
// board drew "no latency measured yet" beside a page showing 15 ms).
func TestErrorBreachShowsLatency(t *testing.T) {
	var canary, baseline Sample
	canary.Requests, canary.Errors = 400, 40
	baseline.Requests = 4000
	for range 400 {
		canary.Latency.Observe(15)
	}
	for range 4000 {
		baseline.Latency.Observe(20)
	}
	v := Decide(Defaults, canary, baseline, 2*time.Minute)
	if v.Action != Rollback || !strings.Contains(v.Reason, "canary errors") {
		t.Fatalf("%s: %s, want a rollback for errors", v.Action, v.Reason)
	}
	if e := v.Evidence; e == nil || e.CanaryP95 < 14 || e.CanaryP95 > 17 || e.BaselineP95 < 19 || e.BaselineP95 > 22 {
		t.Errorf("evidence %+v, want the p95s near 15 and 20 ms", v.Evidence)
	}
}
