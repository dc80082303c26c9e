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
