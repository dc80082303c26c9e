package analysis

import "math"

// binomialTail is P(X >= k) for X ~ Binomial(n, p), computed in log space
// term by term from k (exact; n is a canary's request count, at most a few
// hundred thousand).
func binomialTail(k, n int, p float64) float64 {
	switch {
	case k <= 0:
		return 1
	case k > n:
		return 0
	case p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	logTerm := lchoose(n, k) + float64(k)*lp + float64(n-k)*lq
	sum := 0.0
	for i := k; i <= n; i++ {
		t := math.Exp(logTerm)
		sum += t
		if t < sum*1e-15 && float64(i) > float64(n)*p {
			break // the terms only fall from here
		}
		// term(i+1) = term(i) * (n-i)/(i+1) * p/q
		logTerm += math.Log(float64(n-i)) - math.Log(float64(i+1)) + lp - lq
	}
	return math.Min(sum, 1)
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// upperBound is a one-sided upper confidence bound at level 1-alpha for a
// proportion seen x times in n (Wilson's score interval, which behaves at
// small n and at 0 where the normal one does not).
func upperBound(x, n int, alpha float64) float64 {
	if n == 0 {
		return 1
	}
	z := normalQuantile(1 - alpha)
	ph := float64(x) / float64(n)
	nf := float64(n)
	den := 1 + z*z/nf
	center := ph + z*z/(2*nf)
	half := z * math.Sqrt(ph*(1-ph)/nf+z*z/(4*nf*nf))
	return math.Min(1, (center+half)/den)
}

// normalQuantile is the standard normal quantile (Acklam's rational
// approximation, relative error below 1.2e-9).
func normalQuantile(p float64) float64 {
	a := [...]float64{-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00}
	b := [...]float64{-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01}
	c := [...]float64{-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00}
	d := [...]float64{7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00}
	const low = 0.02425
	switch {
	case p <= 0:
		return math.Inf(-1)
	case p >= 1:
		return math.Inf(1)
	case p < low:
		q := math.Sqrt(-2 * math.Log(p))
		return (((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	case p > 1-low:
		q := math.Sqrt(-2 * math.Log(1-p))
		return -(((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	}
	q := p - 0.5
	r := q * q
	return (((((a[0]*r+a[1])*r+a[2])*r+a[3])*r+a[4])*r + a[5]) * q / (((((b[0]*r+b[1])*r+b[2])*r+b[3])*r+b[4])*r + 1)
}
