// Package haproxytest starts the real parts that tests of routing need: a
// haproxy binary, HAProxy processes and local HTTP backends that answer
// with their name. Everything it starts is stopped by PID in t.Cleanup.
package haproxytest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/trackrouter/trackrouter/internal/echo"
	"github.com/trackrouter/trackrouter/internal/testing/ports"
)

// Binary returns the path of haproxy. When it is missing the test fails in
// CI (CI set) and is skipped elsewhere, with a message that says how to get it.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("HAPROXY_BIN"); p != "" {
		return p
	}
	p, err := exec.LookPath("haproxy")
	if err == nil {
		return p
	}
	msg := "haproxy not found: install it (apt-get install -y haproxy) or set HAPROXY_BIN"
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago, below
// the ephemeral range (ports.Free): an outgoing connection cannot take it
// meanwhile. A port is never given twice in one test binary.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := ports.Free()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// StartBackends starts one echo.Backend per name on a free loopback port.
func StartBackends(tb testing.TB, names ...string) map[string]*echo.Backend {
	tb.Helper()
	out := make(map[string]*echo.Backend, len(names))
	for _, name := range names {
		b, err := echo.Start(name, "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(b.Stop)
		out[name] = b
	}
	return out
}

// Process is a HAProxy started in master-worker mode.
type Process struct {
	Cmd        *exec.Cmd
	MasterSock string
	out        *SyncBuffer
	done       chan struct{}
}

// Output is everything HAProxy printed so far.
func (p *Process) Output() string { return p.out.String() }

// Start runs "haproxy -W -S <dir>/master.sock -f cfgPath" and waits until
// the master socket answers. It is stopped at cleanup.
func Start(tb testing.TB, bin, cfgPath string) *Process {
	tb.Helper()
	return StartWith(tb, bin, cfgPath, nil)
}

// StartWith is Start with extra open files HAProxy inherits as file
// descriptors 3, 4, ... (a request log pipe's write end, made
// non-blocking once HAProxy runs, as haproxy.Supervisor does).
func StartWith(tb testing.TB, bin, cfgPath string, extra []*os.File) *Process {
	tb.Helper()
	sock := filepath.Join(filepath.Dir(cfgPath), "master.sock")
	out := &SyncBuffer{}
	cmd := exec.Command(bin, "-W", "-S", sock+",mode,600", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = extra
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	for _, f := range extra {
		syscall.SetNonblock(int(f.Fd()), true)
	}
	p := &Process{Cmd: cmd, MasterSock: sock, out: out, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	tb.Cleanup(p.Stop)
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("haproxy exited at start")
		default:
		}
		_, err := p.Master("show proc")
		return err == nil, nil
	})
	if err != nil {
		tb.Fatalf("haproxy master socket did not answer: %v\n%s", err, out.String())
	}
	return p
}

// Stop stops HAProxy now (SIGTERM, a hard stop: tests keep idle keep-alive
// connections that a soft stop would wait for) and kills it after 5s.
func (p *Process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// Master sends one command to the master CLI and returns the answer.
func (p *Process) Master(command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", p.MasterSock)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		return "", err
	}
	c.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// WaitListening waits until addr accepts TCP connections.
func WaitListening(tb testing.TB, addr string) {
	tb.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		last = err
		return err == nil, nil
	})
	if err != nil {
		tb.Fatalf("%s does not accept connections: %v", addr, last)
	}
}

// Counter sends requests to a frontend and counts answers by body.
type Counter struct {
	URL    string
	Header string
	Client *http.Client
}

// Send sends n GET requests with the header set to group ("" sends none)
// and returns how many each backend answered. Any failed request is an
// error. Without a Client, each call uses new connections.
func (c Counter) Send(n int, group string) (map[string]int, error) {
	client := c.Client
	if client == nil {
		// A transport of its own: connections kept alive from an earlier
		// call could be served by the worker of a config before a reload.
		client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
	}
	got := make(map[string]int)
	for i := 0; i < n; i++ {
		req, err := http.NewRequest(http.MethodGet, c.URL, nil)
		if err != nil {
			return nil, err
		}
		if group != "" {
			req.Header.Set(c.Header, group)
		}
		resp, err := client.Do(req)
		if err != nil {
			return got, fmt.Errorf("request %d: %w", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return got, fmt.Errorf("request %d: %w", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			return got, fmt.Errorf("request %d: status %d: %s", i, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		got[string(body)]++
	}
	return got, nil
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers,
// for logs of processes and goroutines under test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Load sends GET requests to url from clients keep-alive clients for d
// and returns how many were answered: a load generator for benchmarks,
// on loopback only.
func Load(url string, clients int, d time.Duration) int64 {
	var n atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
			defer client.CloseIdleConnections()
			for time.Now().Before(end) {
				resp, err := client.Get(url)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load()
}

// Rounded is v as whole numbers, for printing rates.
func Rounded(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// Median is the median of v (the upper one of an even count).
func Median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// CPU is the CPU time (user and system) a stopped HAProxy used, its
// workers included (the master waits for them): per request it is far
// steadier than requests/s on a shared machine.
func (p *Process) CPU() time.Duration {
	<-p.done
	ru, ok := p.Cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
