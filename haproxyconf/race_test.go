package haproxyconf

import (
	"strings"
	"sync"
	"testing"
)

// TestRenderConcurrently: renders run at once in one process (the sidecar's
// loop and its background check); with -race this fails if the parser's
// shared state is not serialized.
func TestRenderConcurrently(t *testing.T) {
	spec := readSpec(t, "../examples/account-service/account-service.yaml")
	want, err := Render(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				got, err := Render(spec, Options{})
				if err != nil || string(got.Config) != string(want.Config) {
					t.Errorf("concurrent render differs: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestForOfflineCheck: the config trackctl checks differs from the rendered
// one in the servers' init-addr only.
func TestForOfflineCheck(t *testing.T) {
	spec := readSpec(t, "../examples/account-service/account-service.yaml")
	r, err := Render(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	off := string(ForOfflineCheck(r.Config))
	if n := strings.Count(string(r.Config), "init-addr last,libc,none"); n != 6 || strings.Contains(off, "libc") || strings.Count(off, "init-addr none") != n {
		t.Errorf("init-addr: %d in the config; offline:\n%s", n, off)
	}
	if strings.ReplaceAll(off, "init-addr none", "init-addr last,libc,none") != string(r.Config) {
		t.Error("ForOfflineCheck changed more than init-addr")
	}
}
