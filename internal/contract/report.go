package contract

import (
	"encoding/json"
	"sort"
	"time"
)

// Report is what one sidecar says its HAProxy runs, read back from HAProxy,
// not what it sent. It is stored as JSON under the pod's name.
type Report struct {
	// Pod is the HAProxy pod the sidecar runs in.
	Pod string `json:"pod"`
	// ResourceVersion is the spec ConfigMap's resourceVersion of the spec
	// HAProxy runs; "" while HAProxy runs none the sidecar confirmed.
	ResourceVersion string `json:"resourceVersion"`
	// Stamp is the config stamp HAProxy reports (its global description).
	Stamp string `json:"stamp"`
	// InSync: HAProxy runs the latest valid spec, weights included, and
	// the files on disk hold it.
	InSync bool `json:"inSync"`
	// HAProxy is "running", or "unreachable" when its master socket does
	// not answer (then Weights is empty: unknown).
	HAProxy string `json:"haproxy"`
	// Since is when this state (spec, stamp, sync, weights) began.
	Since time.Time `json:"since"`
	// Weights are the live server weights: backend -> track -> weight.
	Weights map[string]map[string]int `json:"weights,omitempty"`
	// Down are the servers HAProxy sends no traffic to, whatever their
	// weight: backend -> track -> why ("down": its health checks fail,
	// "no address": its name did not resolve, "maintenance"). Absent
	// from a sidecar older than this field.
	Down map[string]map[string]string `json:"down,omitempty"`
	// Rejected is the last spec the sidecar refused, while it is the latest.
	Rejected *Rejection `json:"rejected,omitempty"`
	// Unreadable is set while the sidecar has not been able to read its
	// spec source for longer than a settle time (HAProxy keeps the last
	// good config).
	Unreadable *Unreadable `json:"unreadable,omitempty"`
	// Samples is the URL at which the sidecar serves its measurements of
	// each track (router/samples), for the canary analysis; empty when it
	// serves none.
	Samples string `json:"samples,omitempty"`
}

// Unreadable is a spec source the sidecar cannot read, since when and why.
type Unreadable struct {
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// Rejection is a spec the sidecar refused and why.
type Rejection struct {
	ResourceVersion string    `json:"resourceVersion"`
	Message         string    `json:"message"`
	At              time.Time `json:"at"`
}

// Same reports whether r and o say the same, Since aside.
func (r *Report) Same(o *Report) bool {
	if r == nil || o == nil {
		return r == o
	}
	a, b := *r, *o
	a.Since, b.Since = time.Time{}, time.Time{}
	if a.Rejected != nil && b.Rejected != nil {
		ra, rb := *a.Rejected, *b.Rejected
		ra.At, rb.At = time.Time{}, time.Time{}
		a.Rejected, b.Rejected = &ra, &rb
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// Parse reads the reports of a status ConfigMap's data. A value that is
// not a report (garbage written by hand) is left out and its key listed in
// bad, so that it hides no other pod's report.
func Parse(data map[string]string) (reports map[string]*Report, bad []string) {
	reports = make(map[string]*Report, len(data))
	for pod, v := range data {
		var r Report
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			bad = append(bad, pod)
			continue
		}
		reports[pod] = &r
	}
	sort.Strings(bad)
	return reports, bad
}
