package router

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/router/source"
)

// load sends requests to url from workers goroutines until stop is called:
// half reuse connections (keep-alive), half open one per request. Every
// request is bounded by a timeout, and so is the whole load.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       func()
	wg         sync.WaitGroup
}

func startLoad(url, header, group string, workers int) *load {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	l := &load{stop: cancel}
	for i := 0; i < workers; i++ {
		keepAlive := i%2 == 0
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
			defer client.CloseIdleConnections()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				req.Header.Set(header, group)
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if ctx.Err() != nil {
					return // stopped mid-request: not a failure of HAProxy
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, fmt.Sprintf("keep-alive=%v: %v", keepAlive, err))
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *load) finish() (ok, failed int64, errs []string) {
	l.stop()
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.errs
}

// TestReloadsUnderLoadLoseNothing reloads HAProxy 20 times while keep-alive
// and one-connection-per-request clients send requests: none may fail.
func TestReloadsUnderLoadLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("20 reloads under load")
	}
	h := newHarness(t)
	l := startLoad(h.client.URL, "X-Traffic-Group", "FREE", 4)
	const reloads = 20
	before := h.reloads()
	for i := 1; i <= reloads; i++ {
		spec := strings.Replace(h.spec(5, 95), "  FREE: canary\n", fmt.Sprintf("  FREE: canary\n  RELOAD%d: canary\n", i), 1)
		h.writeSpec(spec)
		h.waitFor("reload", func() bool { return h.reloads() >= before+float64(i) })
		time.Sleep(20 * time.Millisecond) // let requests flow on the new worker
	}
	ok, failed, errs := l.finish()
	t.Logf("%d reloads under load: %d requests ok, %d failed", reloads, ok, failed)
	if failed != 0 {
		t.Errorf("%d of %d requests failed across %d reloads: %v", failed, ok+failed, reloads, errs)
	}
	if ok < 100 {
		t.Errorf("only %d requests went through: the load did not run", ok)
	}
}

// TestTrackDownGoesToOtherTracks stops the canary backend: FREE requests
// must all be answered by production, before and after the health check
// marks canary down.
func TestTrackDownGoesToOtherTracks(t *testing.T) {
	h := newHarness(t)
	h.writeSpec(h.spec(50, 50))
	h.waitFor("runtime update", func() bool { return h.runtimeUpdates() == 1 })
	h.backends["canary"].Stop()

	got := h.send(200, "FREE") // right away: connection refused, redispatched
	if got["production"] != 200 {
		t.Errorf("right after canary went down: want all 200 on production, got %v", got)
	}
	cli := h.cli
	h.waitFor("the health check marks canary/canary DOWN", func() bool {
		out, err := cli.Command(context.Background(), "@1 show stat canary 4 -1")
		return err == nil && strings.Contains(out, "canary,canary,") && strings.Contains(out, ",DOWN,")
	})
	got = h.send(200, "FREE")
	if got["production"] != 200 {
		t.Errorf("after the health check: want all 200 on production, got %v", got)
	}
}

// TestMountedConfigMapSymlinkSwap updates the spec the way the kubelet
// updates a mounted ConfigMap: a new timestamped directory, then an atomic
// rename of the ..data symlink. The file itself is a symlink into ..data.
func TestMountedConfigMapSymlinkSwap(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(h.dir, "mount")
	write := func(version, data string) {
		ts := filepath.Join(dir, "..2026_11_26_"+version)
		if err := os.MkdirAll(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, "service.yaml"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write("1", h.spec(5, 95))
	if err := os.Symlink("..data/service.yaml", filepath.Join(dir, "service.yaml")); err != nil {
		t.Fatal(err)
	}
	// A second source on the mounted path feeds the same router.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &source.FileSource{Path: filepath.Join(dir, "service.yaml"), Log: h.router.Log, Resync: time.Hour}
	done := make(chan struct{})
	go func() { src.Run(ctx, h.router.Submit); close(done) }()
	defer func() { cancel(); <-done }()

	write("2", h.spec(40, 60))
	h.waitFor("the swapped spec applied", func() bool { return h.runtimeUpdates() == 1 })
	if got := h.send(100, "FREE"); got["canary"] != 40 {
		t.Errorf("after the ..data swap: want canary 40 of 100, got %v", got)
	}
}

// TestSupervisedHAProxyRestarts kills the HAProxy that --run-haproxy
// supervises: the sidecar starts it again with the last good config.
func TestSupervisedHAProxyRestarts(t *testing.T) {
	h := newHarness(t)
	h.writeSpec(h.spec(20, 80))
	h.waitFor("runtime update", func() bool { return h.runtimeUpdates() == 1 })
	sup := h.sup
	pid := sup.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitFor("haproxy restarted", func() bool {
		now := sup.PID()
		return now != pid && h.router.Ready()
	})
	var got map[string]int
	h.waitFor("traffic served again", func() bool {
		var err error
		got, err = h.client.Send(100, "FREE")
		return err == nil
	})
	if got["canary"] != 20 {
		t.Errorf("after the restart: want the last good weights (canary 20 of 100), got %v", got)
	}
}
