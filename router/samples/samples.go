// Package samples measures each track in one HAProxy pod for the canary
// analysis: the exact counts of HAProxy's current worker (show stat), and
// the latencies of HAProxy's per-request log, which the Collector reads
// from a unix datagram socket (haproxyconf.LatencyFormat). The sidecar
// serves both at /samples; the controller's leader reads every pod's and
// sums them (analysis.Tally). Nothing here writes to the API server.
package samples

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/analysis"
	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/router/haproxy"
)

// The wire format is the contract's (contract.SamplesReport): the
// controller reads it without linking this package.
const Path = contract.SamplesPath

type (
	Report = contract.SamplesReport
	Server = contract.SamplesServer
)

// Collector reads HAProxy's request log and keeps a latency histogram per
// server. A line it cannot read is counted and dropped; HAProxy never
// waits for it (a full socket buffer or pipe drops lines, never requests).
type Collector struct {
	conn  *net.UnixConn // a datagram socket (Listen), or
	pipe  *os.File      // a pipe's read end (Pipe)
	path  string
	epoch string

	mu   sync.Mutex
	hist map[haproxyconf.ServerKey]*analysis.Histogram

	lines, malformed atomic.Int64
}

// Listen opens the log socket at path. A socket left there by an earlier
// run is replaced; any other file is not touched.
func Listen(path string) (*Collector, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("latency log %s exists and is not a socket: remove it or give another path", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("latency log %s: %w", path, err)
		}
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("latency log: %w", err)
	}
	// As large as the kernel allows (net.core.rmem_max caps it): bursts
	// beyond it drop lines, which only thins the latency sample.
	conn.SetReadBuffer(8 << 20)
	return &Collector{conn: conn, path: path, epoch: strconv.FormatInt(time.Now().UnixNano(), 36),
		hist: make(map[haproxyconf.ServerKey]*analysis.Histogram)}, nil
}

// Pipe makes the request log a pipe: HAProxy, given the write end as a
// file descriptor of its own (haproxy.Supervisor.LogPipe), writes a line
// per request with one write(2), which costs it about half of a datagram's
// sendto(2) (BenchmarkMeasuringCost). The write end is non-blocking once
// HAProxy runs (the Supervisor makes it so): a reader that falls behind
// makes HAProxy drop lines, never wait. The pipe holds 1 MiB where the
// kernel allows (fs.pipe-max-size), some 40,000 lines.
func Pipe() (*Collector, *os.File, error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("latency log pipe: %w", err)
	}
	// A smaller pipe (the kernel's cap) only drops more lines in a burst.
	unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, 1<<20)
	// The read end in Go's poller, so that Run's Close ends a Read; the
	// write end blocking here (os/exec hands it on as it is).
	syscall.SetNonblock(p[0], true)
	c := &Collector{pipe: os.NewFile(uintptr(p[0]), "latency-log"), epoch: strconv.FormatInt(time.Now().UnixNano(), 36),
		hist: make(map[haproxyconf.ServerKey]*analysis.Histogram)}
	return c, os.NewFile(uintptr(p[1]), "latency-log"), nil
}

// Run reads log lines until ctx ends, then closes and removes the socket
// (or closes the pipe's read end).
func (c *Collector) Run(ctx context.Context) error {
	if c.pipe != nil {
		return c.runPipe(ctx)
	}
	go func() {
		<-ctx.Done()
		c.conn.Close()
	}()
	defer os.Remove(c.path)
	buf := make([]byte, 2048)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("latency log: %w", err)
		}
		c.Observe(buf[:n])
	}
}

func (c *Collector) runPipe(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		c.pipe.Close()
	}()
	r := bufio.NewReaderSize(c.pipe, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		switch {
		case err == nil:
			c.Observe(line)
		case errors.Is(err, bufio.ErrBufferFull):
			c.lines.Add(1)
			c.malformed.Add(1)
			for errors.Is(err, bufio.ErrBufferFull) { // the rest of an odd line
				_, err = r.ReadSlice('\n')
			}
		case ctx.Err() != nil || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF):
			return nil // stopped, or every write end closed
		default:
			return fmt.Errorf("latency log: %w", err)
		}
	}
}

// Observe takes one log line: "backend server status Ta Tr". A request
// with no server (<NOSRV>) or no response (Tr -1) has no latency; it is
// counted by HAProxy's stats.
func (c *Collector) Observe(line []byte) {
	c.lines.Add(1)
	f := bytes.Fields(line)
	if len(f) != 5 {
		c.malformed.Add(1)
		return
	}
	tr, err := strconv.ParseInt(string(f[4]), 10, 64)
	if err != nil {
		c.malformed.Add(1)
		return
	}
	if tr < 0 || string(f[1]) == "<NOSRV>" {
		return
	}
	key := haproxyconf.ServerKey{Backend: string(f[0]), Server: string(f[1])}
	c.mu.Lock()
	h := c.hist[key]
	if h == nil {
		h = new(analysis.Histogram)
		c.hist[key] = h
	}
	h.Observe(float64(tr))
	c.mu.Unlock()
}

// latency is a copy of the histograms.
func (c *Collector) latency() map[haproxyconf.ServerKey]analysis.Histogram {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[haproxyconf.ServerKey]analysis.Histogram, len(c.hist))
	for k, h := range c.hist {
		out[k] = *h
	}
	return out
}

// Stats reads HAProxy's counters; *haproxy.MasterCLI is one.
type Stats interface {
	ShowProc(ctx context.Context) (haproxy.Proc, error)
	ServerStats(ctx context.Context) (map[haproxyconf.ServerKey]haproxy.ServerStats, error)
}

// Read makes a Report: the current worker's counters (read between two
// reads of its PID, so that a reload between them is seen and read again),
// and the collector's latencies (c may be nil: no latencies).
func Read(ctx context.Context, st Stats, c *Collector) (*Report, error) {
	for try := 0; ; try++ {
		before, err := st.ShowProc(ctx)
		if err != nil {
			return nil, err
		}
		stats, err := st.ServerStats(ctx)
		if err != nil {
			return nil, err
		}
		after, err := st.ShowProc(ctx)
		if err != nil {
			return nil, err
		}
		if len(before.Workers) != 1 || len(after.Workers) != 1 {
			return nil, fmt.Errorf("HAProxy has %d current workers: want 1", len(after.Workers))
		}
		if before.Workers[0] != after.Workers[0] {
			if try < 3 {
				continue // reloaded while read
			}
			return nil, errors.New("HAProxy reloaded during every read of its counters")
		}
		rep := &Report{Version: contract.SamplesVersion, Worker: strconv.Itoa(after.Workers[0])}
		var lat map[haproxyconf.ServerKey]analysis.Histogram
		if c != nil {
			lat = c.latency()
			rep.LatencyEpoch = c.epoch
			rep.LogLines, rep.LogMalformed = c.lines.Load(), c.malformed.Load()
		}
		for k, s := range stats {
			rep.Servers = append(rep.Servers, Server{Backend: k.Backend, Server: k.Server,
				Requests: s.Requests + s.ConnErrors, Errors: s.Status5xx + s.ConnErrors + s.RespErrors, Latency: lat[k]})
		}
		sort.Slice(rep.Servers, func(i, j int) bool {
			a, b := rep.Servers[i], rep.Servers[j]
			return a.Backend < b.Backend || a.Backend == b.Backend && a.Server < b.Server
		})
		return rep, nil
	}
}

// Handler serves Read's Report as JSON.
func Handler(st Stats, c *Collector) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		rep, err := Read(ctx, st, c)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rep)
	})
}
