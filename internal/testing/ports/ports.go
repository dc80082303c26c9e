// Package ports hands out free TCP ports on loopback for the test rigs'
// listeners, below the kernel's ephemeral range: a port taken from that
// range (a listen on :0) can be taken again by any outgoing connection
// between the moment it is picked and the moment the listener binds it
// (seen: kube-scheduler's "bind: address already in use" at a control
// plane's start).
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Free returns a port that nothing listens on now, below the ephemeral
// range, never the same twice in a process.
func Free() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	low, high := 20000, ephemeralLow()
	if high-low < 1000 {
		low = 1024 // a range configured low: take what is below it
	}
	for i := 0; i < 1000 && high > low; i++ {
		port := low + rand.IntN(high-low)
		if given[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		given[port] = true
		return port, nil
	}
	// No room below the ephemeral range: the kernel's choice.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free port: %w", err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	given[port] = true
	return port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1025 {
		return 32768
	}
	return n
}
