package analysis

// PodCounts is one HAProxy pod's counters of one track (a server in a
// backend), as its current worker counted them since it started.
type PodCounts struct {
	Pod string
	// Worker names the worker that counted (its PID and the config's
	// stamp, say): a new worker counts from 0 again.
	Worker           string
	Requests, Errors int64
}

// Tally sums what a track served since a stage began, over every HAProxy
// pod of the service, from reads of their counters. A counter that starts
// again (HAProxy reloaded, restarted, or its pod replaced) loses nothing it
// counted before: the old worker's counts up to its last read are kept,
// and the new worker's are added from 0; what was served between the last
// read of the old worker and its end is not known, so a read that saw a
// reset says so (Decide then waits, never judging on a partial count).
// The zero Tally is ready; it is not safe for concurrent use.
type Tally struct {
	carried Counts               // served by workers that are gone
	start   map[string]PodCounts // by pod: the counts at the stage's start, or 0 for a worker born since
	last    map[string]PodCounts // by pod: the last read
}

// Counts are a track's requests and errors.
type Counts struct {
	Requests, Errors int64
}

// Observe takes one read of every pod's counters and returns what the
// track served since the stage began. reset is true when a pod's worker
// changed or its counters went backwards since the last read. A pod seen
// for the first time after the first read (scaled up) counts from 0; one
// that is not read any more keeps what it counted.
func (t *Tally) Observe(now []PodCounts) (total Counts, reset bool) {
	first := t.start == nil
	if first {
		t.start, t.last = make(map[string]PodCounts), make(map[string]PodCounts)
	}
	for _, c := range now {
		last, known := t.last[c.Pod]
		switch {
		case !known && first:
			t.start[c.Pod] = c // the stage starts here
		case !known:
			t.start[c.Pod] = PodCounts{Pod: c.Pod, Worker: c.Worker} // born during the stage
		case c.Worker != last.Worker || c.Requests < last.Requests || c.Errors < last.Errors:
			reset = true
			st := t.start[c.Pod]
			t.carried.Requests += last.Requests - st.Requests
			t.carried.Errors += last.Errors - st.Errors
			t.start[c.Pod] = PodCounts{Pod: c.Pod, Worker: c.Worker}
		}
		t.last[c.Pod] = c
	}
	total = t.carried
	for pod, last := range t.last {
		st := t.start[pod]
		total.Requests += last.Requests - st.Requests
		total.Errors += last.Errors - st.Errors
	}
	return total, reset // a pod not read now keeps its last counts
}
