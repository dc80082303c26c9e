package analysis

import "math"

// Histogram counts latencies (milliseconds) in buckets that grow by 20%
// from 1 ms: bucket 0 holds [0, 1 ms), bucket i [1.2^(i-1), 1.2^i) ms, the
// last everything from about 67 s. Within a bucket, latencies are taken
// as spread evenly on a log scale.
type Histogram [NumBuckets]int64

// NumBuckets is the number of latency buckets.
const NumBuckets = 64

const growth = 1.2

// edge is the upper edge of bucket i, in ms.
func edge(i int) float64 {
	if i >= NumBuckets-1 {
		return math.Inf(1)
	}
	return math.Pow(growth, float64(i))
}

// lowerEdge is the lower edge of bucket i, in ms.
func lowerEdge(i int) float64 {
	if i == 0 {
		return 0
	}
	return edge(i - 1)
}

// bucket is the bucket of a latency in ms.
func bucket(ms float64) int {
	if ms < 1 {
		return 0
	}
	i := int(math.Floor(math.Log(ms)/math.Log(growth))) + 1
	return min(i, NumBuckets-1)
}

// Observe counts one latency, in milliseconds.
func (h *Histogram) Observe(ms float64) { h[bucket(ms)]++ }

// Add adds o's counts.
func (h *Histogram) Add(o *Histogram) {
	for i := range h {
		h[i] += o[i]
	}
}

// Total is the number of latencies counted.
func (h *Histogram) Total() int64 {
	var n int64
	for _, c := range h {
		n += c
	}
	return n
}

// Quantile is the q-quantile (interpolated in its bucket); NaN when empty.
func (h *Histogram) Quantile(q float64) float64 {
	return h.atRank(int64(math.Ceil(q * float64(h.Total()))))
}

// QuantileUpper is an upper confidence bound at level 1-alpha for the
// q-quantile: the order statistic whose rank is that many standard errors
// above n*q (normal approximation to the binomial count below it).
func (h *Histogram) QuantileUpper(q, alpha float64) float64 {
	n := float64(h.Total())
	rank := n*q + normalQuantile(1-alpha)*math.Sqrt(n*q*(1-q)) + 1
	return h.atRank(int64(math.Min(n, math.Ceil(rank))))
}

// atRank is the rank-th latency, interpolated within its bucket as if the
// bucket's latencies were spread evenly on a log scale.
func (h *Histogram) atRank(rank int64) float64 {
	if h.Total() == 0 {
		return math.NaN()
	}
	rank = max(rank, 1)
	var seen int64
	for i, c := range h {
		if seen+c >= rank {
			return within(i, float64(rank-seen)/float64(c))
		}
		seen += c
	}
	return lowerEdge(NumBuckets - 1)
}

// within is the latency at fraction f (0..1) of bucket i.
func within(i int, f float64) float64 {
	lo, hi := lowerEdge(i), edge(i)
	switch {
	case i == 0:
		return f * hi
	case math.IsInf(hi, 1):
		return lo
	}
	return lo * math.Pow(hi/lo, f)
}

// CountAbove counts the latencies above ms, a bucket straddling ms counted
// for the part of it above (spread evenly on a log scale), rounded down.
func (h *Histogram) CountAbove(ms float64) int64 {
	var n float64
	for i, c := range h {
		lo, hi := lowerEdge(i), edge(i)
		switch {
		case c == 0 || hi <= ms:
		case lo >= ms:
			n += float64(c)
		case i == 0:
			n += float64(c) * (hi - ms) / hi
		case !math.IsInf(hi, 1):
			n += float64(c) * math.Log(hi/ms) / math.Log(hi/lo)
		}
	}
	return int64(n)
}
