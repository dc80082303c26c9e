package haproxyconf

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

// TestDNSOutageKeepsAddresses: when the nameserver does not answer, the
// rendered config keeps every server's address (the last one resolved)
// past HAProxy's 30 s default; without the resolvers' hold lines the same
// config lost them after 30 s and answered 503 to every request. Both run
// side by side on a real HAProxy whose only nameserver is a closed port;
// the tracks' names are "localhost", resolved at start by libc.
func TestDNSOutageKeepsAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 35 s of a DNS outage")
	}
	t.Parallel()
	bin := haproxytest.Binary(t)
	spec := localExample(t)
	for name, tr := range spec.Tracks {
		_, port, _ := net.SplitHostPort(tr.Address)
		tr.Address = "localhost:" + port
		spec.Tracks[name] = tr
	}
	dead := func() string {
		l, _ := net.ListenPacket("udp", "127.0.0.1:0")
		a := l.LocalAddr().String()
		l.Close()
		return a
	}()
	start := func(keep bool) string {
		port := haproxytest.FreePort(t)
		r, err := Render(spec, Options{Bind: fmt.Sprintf("127.0.0.1:%d", port)})
		if err != nil {
			t.Fatal(err)
		}
		cfg := bytes.Replace(r.Config, []byte("  parse-resolv-conf\n"), []byte("  nameserver dead "+dead+"\n"), 1)
		if !keep {
			for _, s := range []string{"timeout", "refused", "other"} {
				cfg = bytes.Replace(cfg, []byte("  hold "+s+" 1h\n"), nil, 1)
			}
		}
		if !bytes.Contains(cfg, []byte("nameserver dead")) {
			t.Fatalf("the rendered config has no parse-resolv-conf to replace:\n%s", r.Config)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		haproxytest.Start(t, bin, path)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		haproxytest.WaitListening(t, addr)
		return "http://" + addr + "/"
	}
	kept, lost := start(true), start(false)
	get := func(url string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set(spec.Header, "ENTERPRISE")
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, url := range []string{kept, lost} {
		if code := get(url); code != http.StatusOK {
			t.Fatalf("%s answered %d before the outage mattered, want 200", url, code)
		}
	}
	time.Sleep(35 * time.Second)
	if code := get(kept); code != http.StatusOK {
		t.Errorf("35 s into the DNS outage the rendered config answered %d, want 200 (the addresses kept)", code)
	}
	if code := get(lost); code != http.StatusServiceUnavailable {
		t.Errorf("without the hold lines: %d 35 s into the outage; want 503 (HAProxy's 30 s default): the test no longer tells them apart", code)
	}
}
