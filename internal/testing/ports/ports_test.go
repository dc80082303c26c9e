package ports

import (
	"net"
	"strconv"
	"testing"
)

// TestFree: ports are below the ephemeral range, free, and never twice.
func TestFree(t *testing.T) {
	seen := map[int]bool{}
	low := ephemeralLow()
	for i := 0; i < 200; i++ {
		p, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] || p >= low {
			t.Fatalf("port %d: seen %v, ephemeral range from %d", p, seen[p], low)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}
