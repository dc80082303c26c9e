package analysis

// PodCounts is one HAProxy pod's counters of one track (a server in a
// backend), as its current worker counted them since it started, and the
// latencies its sidecar read from HAProxy's request log.
type PodCounts struct {
	Pod string
	// Worker names the worker that counted (its PID, say): a new worker
	// counts from 0 again.
	Worker           string
	Requests, Errors int64
	// LatencyEpoch names the start of Latency (the sidecar that keeps it,
	// which is not the worker: the histogram spans reloads, and starts
	// empty again when the sidecar does).
	LatencyEpoch string
	Latency      Histogram
}

// Tally sums what a track served since a stage began, over every HAProxy
// pod of the service, from reads of their counters. A counter that starts
// again (HAProxy reloaded, restarted, or its pod replaced) loses nothing it
// counted before: the old worker's counts up to its last read are kept,
// and the new worker's are added from 0; what was served between the last
// read of the old worker and its end is not known, so a read that saw a
// reset says so (Decide then waits, never judging on a partial count).
// Latencies are summed the same way by their own epoch; a new epoch loses
// some latency lines, never a count, so it is no reset.
// The zero Tally is ready; it is not safe for concurrent use.
type Tally struct {
	counts, latency series
}

// Counts are a track's requests and errors.
type Counts struct {
	Requests, Errors int64
}

// Observe takes one read of every pod's counters and returns what the
// track served since the stage began; its Reset is true when a pod's
// worker changed or its counters went backwards since the last read. A
// pod seen for the first time after the first read (scaled up, or it did
// not answer) counts from that read: never what it served before, which
// may be the previous build's; one that is not read any more keeps what
// it counted.
func (t *Tally) Observe(now []PodCounts) Sample {
	counts := make([]reading, len(now))
	latency := make([]reading, len(now))
	for i, c := range now {
		counts[i] = reading{c.Pod, c.Worker, []int64{c.Requests, c.Errors}}
		latency[i] = reading{c.Pod, c.LatencyEpoch, c.Latency[:]}
	}
	total, reset := t.counts.observe(counts)
	hist, _ := t.latency.observe(latency)
	total = append(total, 0, 0) // no pod read yet: nothing served
	s := Sample{Requests: total[0], Errors: total[1], Reset: reset}
	copy(s.Latency[:], hist)
	return s
}

// reading is one pod's counters under one identity (a worker, an epoch).
type reading struct {
	pod, id string
	v       []int64
}

// series sums counters read from many pods, each of which may start
// again from 0 under a new identity.
type series struct {
	carried []int64            // counted by identities that are gone
	start   map[string]reading // by pod: the counts at the stage's start, or 0 for an identity born since
	last    map[string]reading // by pod: the last read
}

func (s *series) observe(now []reading) (total []int64, reset bool) {
	if s.start == nil {
		s.start, s.last = make(map[string]reading), make(map[string]reading)
	}
	for _, c := range now {
		if s.carried == nil {
			s.carried = make([]int64, len(c.v))
		}
		last, known := s.last[c.pod]
		switch {
		case !known:
			// The stage starts here for this pod: at the first read, or
			// when a pod is first read later (scaled up, or it did not
			// answer before). Its counters may hold what it served before
			// the stage (the previous build's, on the same server name):
			// what it served before this first read is not counted.
			s.start[c.pod] = c
		case c.id != last.id || backwards(c.v, last.v):
			reset = true
			add(s.carried, last.v, s.start[c.pod].v)
			s.start[c.pod] = reading{c.pod, c.id, nil}
		}
		s.last[c.pod] = reading{c.pod, c.id, append([]int64(nil), c.v...)}
	}
	total = append([]int64(nil), s.carried...)
	for pod, last := range s.last {
		if total == nil {
			total = make([]int64, len(last.v))
		}
		add(total, last.v, s.start[pod].v)
	}
	return total, reset // a pod not read now keeps its last counts
}

// add adds v minus base (nil: 0) to sum.
func add(sum, v, base []int64) {
	for i := range sum {
		if i < len(v) {
			sum[i] += v[i]
		}
		if i < len(base) {
			sum[i] -= base[i]
		}
	}
}

func backwards(now, last []int64) bool {
	for i := range now {
		if i < len(last) && now[i] < last[i] {
			return true
		}
	}
	return false
}

// TallyState is a Tally written down (in the release state, at each look
// the pipeline writes anyway), so that another controller (a restart, a
// new leader) goes on counting from the stage's start, not from its own.
type TallyState struct {
	Counts  SeriesState `json:"counts"`
	Latency SeriesState `json:"latency"`
}

// SeriesState is a series written down: what identities that are gone
// counted, and by pod the reading the stage starts from and the last one.
// Trailing zeros of a reading are left out (a histogram is mostly zeros).
type SeriesState struct {
	Carried []int64                 `json:"carried,omitempty"`
	Start   map[string]ReadingState `json:"start,omitempty"`
	Last    map[string]ReadingState `json:"last,omitempty"`
}

// ReadingState is one pod's counters under one identity (a worker, an
// latency epoch).
type ReadingState struct {
	ID string  `json:"id"`
	V  []int64 `json:"v,omitempty"`
}

// State writes t down.
func (t *Tally) State() TallyState {
	return TallyState{Counts: t.counts.state(), Latency: t.latency.state()}
}

// RestoreTally is the Tally that st wrote down.
func RestoreTally(st TallyState) Tally {
	return Tally{counts: restoreSeries(st.Counts, 2), latency: restoreSeries(st.Latency, NumBuckets)}
}

func (s *series) state() SeriesState {
	out := SeriesState{Carried: trimZeros(s.carried)}
	if len(s.start) > 0 {
		out.Start, out.Last = make(map[string]ReadingState), make(map[string]ReadingState)
		for pod, r := range s.start {
			out.Start[pod] = ReadingState{ID: r.id, V: trimZeros(r.v)}
		}
		for pod, r := range s.last {
			out.Last[pod] = ReadingState{ID: r.id, V: trimZeros(r.v)}
		}
	}
	return out
}

// restoreSeries reads a series written down, each reading n values long.
func restoreSeries(st SeriesState, n int) series {
	s := series{start: make(map[string]reading), last: make(map[string]reading)}
	if len(st.Start) > 0 || st.Carried != nil {
		s.carried = pad(st.Carried, n)
	}
	for pod, r := range st.Start {
		var v []int64
		if r.V != nil {
			v = pad(r.V, n) // nil: an identity born since the stage began, from 0
		}
		s.start[pod] = reading{pod, r.ID, v}
	}
	for pod, r := range st.Last {
		s.last[pod] = reading{pod, r.ID, pad(r.V, n)}
	}
	return s
}

func trimZeros(v []int64) []int64 {
	if v == nil {
		return nil
	}
	n := len(v)
	for n > 0 && v[n-1] == 0 {
		n--
	}
	return append(make([]int64, 0, n), v[:n]...)
}

func pad(v []int64, n int) []int64 {
	out := make([]int64, max(n, len(v)))
	copy(out, v)
	return out
}
