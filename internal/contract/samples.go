package contract

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/analysis"
)

// SamplesPath is where a sidecar serves its SamplesReport, on its metrics
// address (the container port named "metrics" in the HAProxy tier).
const SamplesPath = "/samples"

// SamplesVersion is the version of SamplesReport this build writes and the
// newest it reads. A report without a version is version 1 (the sidecars
// before it was written). A controller reads every version up to its own:
// a sidecar one release newer that writes a newer version is refused with
// what to do (upgrade track-controller), and that pod is named as one that
// cannot be measured: its stage waits, it is never judged on a format the
// controller does not know. A new field that older readers may ignore does
// not change the version; a field whose meaning changes does.
const SamplesVersion = 1

// SamplesReport is one pod's measurements of every track: what GET
// /samples answers.
type SamplesReport struct {
	// Version is the format's version (SamplesVersion); 0 means 1.
	Version int `json:"version,omitempty"`
	// Worker is the PID of the HAProxy worker whose counters these are;
	// a new worker counts from 0.
	Worker string `json:"worker"`
	// LatencyEpoch names the start of the latency histograms (the
	// sidecar's start): they span reloads, not sidecar restarts.
	LatencyEpoch string          `json:"latencyEpoch"`
	Servers      []SamplesServer `json:"servers"`
	// LogLines and LogMalformed are the request log lines read and those
	// that were not in the latency format, since the sidecar started.
	LogLines     int64 `json:"logLines"`
	LogMalformed int64 `json:"logMalformed"`
}

// SamplesServer is one track in one backend.
type SamplesServer struct {
	Backend string `json:"backend"`
	Server  string `json:"server"`
	// Requests are HTTP requests sent to the server and connections to
	// it that failed; Errors are 5xx responses, failed connections and
	// failed responses (reset, timeout).
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Latency is the histogram of the server's response times (Tr) read
	// from the request log, in analysis.Histogram's buckets.
	Latency analysis.Histogram `json:"latency"`
}

// FetchSamples reads a pod's SamplesReport from url.
func FetchSamples(ctx context.Context, client *http.Client, url string) (*SamplesReport, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		// The status only: whatever answered is not copied into logs or
		// the board's page (the sidecar logs its own reasons).
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	rep, err := DecodeSamples(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return rep, nil
}

// DecodeSamples reads a SamplesReport from what GET /samples answered,
// refusing a version newer than this build reads.
func DecodeSamples(body []byte) (*SamplesReport, error) {
	var rep SamplesReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return nil, fmt.Errorf("not a samples report: %w", err)
	}
	if rep.Version > SamplesVersion {
		return nil, fmt.Errorf("a samples report of version %d, newer than the %d this build reads: upgrade track-controller (and trackctl) to the sidecar's release", rep.Version, SamplesVersion)
	}
	return &rep, nil
}

// PodCounts is rep's counts of one server, for analysis.Tally.
func (rep *SamplesReport) PodCounts(pod string, key haproxyconf.ServerKey) (analysis.PodCounts, bool) {
	for _, s := range rep.Servers {
		if s.Backend == key.Backend && s.Server == key.Server {
			return analysis.PodCounts{Pod: pod, Worker: rep.Worker, Requests: s.Requests, Errors: s.Errors,
				LatencyEpoch: rep.LatencyEpoch, Latency: s.Latency}, true
		}
	}
	return analysis.PodCounts{}, false
}
