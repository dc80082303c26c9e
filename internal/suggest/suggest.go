// Package suggest finds the name a user most likely meant: "did you mean".
package suggest

import "strings"

// Closest is the candidate nearest to bad, at most 2 edits away (or one
// that bad, 3 characters or more, begins), ties broken by name; "" when
// none is near. The same distance serves flags and spec fields.
func Closest(bad string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		d := Distance(bad, c)
		if strings.HasPrefix(c, bad) && len(bad) >= 3 {
			d = 1
		}
		if d < bestDist || d == bestDist && c < best {
			best, bestDist = c, d
		}
	}
	return best
}

// Distance is the Levenshtein distance of a and b.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
