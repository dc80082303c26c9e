package board

import (
	"fmt"
	"math"
	"time"

	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/pipeline"
)

// evidenceView is what the release's last look (while baking) or last
// decision on a look (after it) compared: the canary against what it was
// tested against, drawn, with the numbers and the verdict in words.
type evidenceView struct {
	At      time.Time
	What    string // "last look: wait", "decided: rollback"
	Verdict string
	Bars    []evidenceBar
	// Baseline is the track the canary was compared with (the last
	// stage's), "" when not known.
	Baseline string
}

// evidenceBar is one measure: the baseline's and the canary's values as
// bars, the allowed value as a line, on one scale (0-240 in the drawing).
type evidenceBar struct {
	Name                         string
	Canary, Baseline, Allowed    string // the numbers, in words
	CanaryW, BaselineW, AllowedX int
	Over                         bool // the canary is past what is allowed
	Tested                       bool
}

// evidenceOf is the release's latest evidence, nil when it has none;
// stages are the spec's (the last is the baseline).
func evidenceOf(r *pipeline.Status, stages []string) *evidenceView {
	v := latestEvidence(r)
	if v != nil && len(stages) > 0 {
		v.Baseline = stages[len(stages)-1]
	}
	return v
}

func latestEvidence(r *pipeline.Status) *evidenceView {
	if r == nil {
		return nil
	}
	if j := r.Judged; j != nil && j.Evidence != nil {
		return drawEvidence(j.Evidence, j.At, "last look: "+lookWords(j.Action), j.Reason)
	}
	for i := len(r.Decisions) - 1; i >= 0; i-- {
		if d := r.Decisions[i]; d.Evidence != nil {
			verdict := d.Reason
			if verdict == r.Reason {
				verdict = "" // the page says it as the last decision
			}
			return drawEvidence(d.Evidence, d.At, fmt.Sprintf("decided: %s on %s", d.Kind, d.Stage), verdict)
		}
	}
	return nil
}

func drawEvidence(e *analysis.Evidence, at time.Time, what, verdict string) *evidenceView {
	v := &evidenceView{At: at, What: what, Verdict: verdict}
	rate := func(x, n int64) float64 {
		if n == 0 {
			return 0
		}
		return float64(x) / float64(n)
	}
	canary, baseline := rate(e.CanaryErrors, e.CanaryRequests), rate(e.BaselineErrors, e.BaselineRequests)
	pct := func(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) }
	v.Bars = append(v.Bars, bar("5xx rate", canary, baseline, e.AllowedErrors, e.AllowedErrors > 0,
		fmt.Sprintf("%s (%d of %d)", pct(canary), e.CanaryErrors, e.CanaryRequests),
		fmt.Sprintf("%s (%d of %d)", pct(baseline), e.BaselineErrors, e.BaselineRequests), pct(e.AllowedErrors)))
	msec := func(f float64) string {
		if f == 0 {
			return "– (no latency measured yet)"
		}
		return fmt.Sprintf("%.0f ms", f)
	}
	allowed := "not tested yet (too few baseline requests)"
	switch {
	case e.AllowedP95 > 0:
		allowed = msec(e.AllowedP95)
	case e.BaselineRequests >= 400 && canary > e.AllowedErrors && e.AllowedErrors > 0:
		allowed = "not tested at this look (the 5xx rate decided it)"
	}
	v.Bars = append(v.Bars, bar("p95 latency", e.CanaryP95, e.BaselineP95, e.AllowedP95, e.AllowedP95 > 0,
		msec(e.CanaryP95), msec(e.BaselineP95), allowed))
	return v
}

// lookWords is a look's verdict in words.
func lookWords(a analysis.Action) string {
	switch a {
	case analysis.Wait:
		return "no breach yet, baking on"
	case analysis.Rollback:
		return "roll back"
	}
	return string(a)
}

func bar(name string, canary, baseline, allowed float64, tested bool, cw, bw, aw string) evidenceBar {
	top := math.Max(canary, math.Max(baseline, allowed)) * 1.15
	x := func(f float64) int {
		if top <= 0 {
			return 0
		}
		return int(math.Round(240 * f / top))
	}
	return evidenceBar{Name: name, Canary: cw, Baseline: bw, Allowed: aw, CanaryW: x(canary), BaselineW: x(baseline), AllowedX: x(allowed),
		Over: tested && canary > allowed, Tested: tested}
}
