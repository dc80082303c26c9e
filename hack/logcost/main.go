// Command logcost measures what HAProxy's per-request log costs, the
// source of the latency distribution for the canary analysis: requests/s
// through HAProxy with and without a raw log line per request sent to a
// unix datagram socket that this program reads, alternating, and how many
// lines arrive. Loopback only, bounded: 5 rounds of 5 s each way.
//
//	go run ./hack/logcost
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const cfgTmpl = `global
  hard-stop-after 5s
  log stderr format raw local0 notice
defaults
  mode http
  log global
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:%d
%s  default_backend be
backend be
  balance roundrobin
  server canary 127.0.0.1:%d weight 5
  server production 127.0.0.1:%d weight 95
`

func main() {
	dir, _ := os.MkdirTemp("", "logcost")
	defer os.RemoveAll(dir)
	b1, _ := net.Listen("tcp", "127.0.0.1:0")
	b2, _ := net.Listen("tcp", "127.0.0.1:0")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	go http.Serve(b1, h)
	go http.Serve(b2, h)
	sock := dir + "/log.sock"
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		panic(err)
	}
	conn.SetReadBuffer(8 << 20)
	var lines, bytesIn atomic.Int64
	var perServer sync.Map
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			lines.Add(1)
			bytesIn.Add(int64(n))
			f := bytes.Fields(buf[:n])
			if len(f) >= 4 {
				k := string(f[1])
				v, _ := perServer.LoadOrStore(k, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}
	}()
	port := func() int {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		return p
	}
	p1, p2 := b1.Addr().(*net.TCPAddr).Port, b2.Addr().(*net.TCPAddr).Port
	logLines := fmt.Sprintf("  log %s len 512 format raw local0 info\n  log-format \"%%b %%s %%ST %%Ta %%Tr\"\n", sock)
	for round := 0; round < 5; round++ {
		for _, withLog := range []bool{false, true} {
			fp := port()
			extra := ""
			if withLog {
				extra = logLines
			}
			cfg := dir + "/h.cfg"
			os.WriteFile(cfg, []byte(fmt.Sprintf(cfgTmpl, fp, extra, p1, p2)), 0o644)
			cmd := exec.Command(haproxyBin(), "-db", "-f", cfg)
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				panic(err)
			}
			time.Sleep(300 * time.Millisecond)
			l0 := lines.Load()
			n := load(fmt.Sprintf("http://127.0.0.1:%d/", fp), 16, 5*time.Second)
			time.Sleep(200 * time.Millisecond)
			got := lines.Load() - l0
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			fmt.Printf("round %d log=%v: %.0f req/s (%d requests), log lines %d\n", round, withLog, float64(n)/5, n, got)
		}
	}
	var parts []string
	perServer.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	fmt.Println("per server:", strings.Join(parts, " "), "bytes/line:", bytesIn.Load()/max(lines.Load(), 1))
}

func load(url string, workers int, d time.Duration) int64 {
	var n atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for time.Now().Before(end) {
				resp, err := c.Get(url)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return n.Load()
}

func haproxyBin() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	return "/usr/sbin/haproxy"
}
