package haproxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

// TestServerStatsFromHAProxy: the counters read back from a real HAProxy
// are exactly the requests and 5xx each server served, and a failed
// connection counts on the server that refused it, as a connection error,
// not as a request (the analysis counts both).
func TestServerStatsFromHAProxy(t *testing.T) {
	bin := haproxytest.Binary(t)
	serve := func(every int) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int64
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if every > 0 && n.Add(1)%int64(every) == 0 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		})}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return l.Addr().String()
	}
	canary, production := serve(4), serve(0) // every 4th canary answer is a 503
	closed := func() string { l, _ := net.Listen("tcp", "127.0.0.1:0"); a := l.Addr().String(); l.Close(); return a }()
	fe := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	cfg := fmt.Sprintf(`global
defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s
  retries 0
frontend fe
  bind %s
  use_backend down if { path /down }
  default_backend b
backend b
  balance roundrobin
  server canary %s
  server production %s
backend down
  server gone %s
`, fe, canary, production, closed)
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := haproxytest.Start(t, bin, path)
	haproxytest.WaitListening(t, fe)
	for range 40 {
		resp, err := http.Get("http://" + fe + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for range 3 {
		if resp, err := http.Get("http://" + fe + "/down"); err == nil {
			resp.Body.Close()
		}
	}
	got, err := (&MasterCLI{Socket: p.MasterSock}).ServerStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[haproxyconf.ServerKey]ServerStats{
		{Backend: "b", Server: "canary"}:     {Requests: 20, Status5xx: 5},
		{Backend: "b", Server: "production"}: {Requests: 20},
		{Backend: "down", Server: "gone"}:    {ConnErrors: 3}, // never a request: the connection failed
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server stats (-want +got):\n%s", diff)
	}
}

func TestParseServerStatsRefusesGarbage(t *testing.T) {
	for _, out := range []string{"", "Unknown command.\n", "# pxname,svname\nb,s\n"} {
		if _, err := ParseServerStats(out); err == nil {
			t.Errorf("%q: want an error", out)
		}
	}
}

// TestDownFromHAProxy: a real HAProxy's show servers state says which
// servers take no traffic and why: one whose checks fail is down, one
// whose name did not resolve has no address, one disabled in the config is
// in maintenance; a server that answers its checks is in none of them.
func TestDownFromHAProxy(t *testing.T) {
	bin := haproxytest.Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	closed := func() string { l, _ := net.Listen("tcp", "127.0.0.1:0"); a := l.Addr().String(); l.Close(); return a }()
	fe := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	cfg := fmt.Sprintf(`global
defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s
  timeout check 1s
frontend fe
  bind %s
  default_backend b
backend b
  server up %s check inter 100ms fall 2 rise 1
  server gone %s check inter 100ms fall 2 rise 1
  server nameless nothing.invalid:80 check init-addr none
  server off %s check disabled
`, fe, l.Addr(), closed, l.Addr())
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := haproxytest.Start(t, bin, path)
	haproxytest.WaitListening(t, fe)
	k := func(s string) haproxyconf.ServerKey { return haproxyconf.ServerKey{Backend: "b", Server: s} }
	want := map[haproxyconf.ServerKey]string{k("gone"): ServerDown, k("nameless"): ServerNoAddress, k("off"): ServerMaint}
	cli := &MasterCLI{Socket: p.MasterSock}
	var got map[haproxyconf.ServerKey]string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		o, err := cli.Observe(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		if got = o.Down; cmp.Equal(want, got) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !cmp.Equal(want, got) {
		t.Fatalf("servers taking no traffic after 5 s (-want +got):\n%s", cmp.Diff(want, got))
	}
	// A drain forced by hand is forced (the sidecar ends it), not down.
	if _, err := cli.Command(context.Background(), "@1 set server b/up state drain"); err != nil {
		t.Fatal(err)
	}
	o, err := cli.Observe(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !o.Forced[k("up")] || o.Down[k("up")] != "" {
		t.Errorf("b/up drained by hand: forced %v, down %q; want forced, not down", o.Forced[k("up")], o.Down[k("up")])
	}
}
