package haproxyconf

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/weights"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/render")

const goldenDir = "../testdata/render"

func readSpec(t testing.TB, path string) *weights.Spec {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := weights.Parse(filepath.Base(path), data)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 {
		t.Fatalf("%s: want one spec, got %d", path, len(specs))
	}
	return specs[0]
}

// TestGolden renders each testdata/render/<case>.input.yaml (with
// <case>.base.cfg as base config when present), compares the result with
// <case>.golden.cfg and checks the golden file with haproxy -c.
func TestGolden(t *testing.T) {
	bin := haproxytest.Binary(t)
	inputs, err := filepath.Glob(filepath.Join(goldenDir, "*.input.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs in %s: %v", goldenDir, err)
	}
	for _, input := range inputs {
		name := strings.TrimSuffix(filepath.Base(input), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			var opt Options
			if base, err := os.ReadFile(filepath.Join(goldenDir, name+".base.cfg")); err == nil {
				opt.Base = string(base)
			}
			if strings.Contains(name, "affinity") {
				opt.MetricsBind = ":8404" // as the sidecar renders it
			}
			rendered, err := Render(readSpec(t, input), opt)
			if err != nil {
				t.Fatal(err)
			}
			got := rendered.Config
			again, err := Render(readSpec(t, input), opt)
			if err != nil || !bytes.Equal(got, again.Config) {
				t.Fatalf("two renders of the same spec differ (err %v)", err)
			}
			golden := filepath.Join(goldenDir, name+".golden.cfg")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./haproxyconf -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("render differs from %s (-want +got):\n%s", golden, diff)
			}
			if err := (Checker{Binary: bin}).CheckFile(context.Background(), golden); err != nil {
				t.Errorf("haproxy -c %s: %v", golden, err)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	spec := readSpec(t, filepath.Join(goldenDir, "minimal.input.yaml"))
	tests := []struct {
		name string
		opt  Options
		want string
	}{
		{"base has the frontend", Options{Base: "frontend web\n  bind :81\n"}, `base config already has a frontend section named "web"`},
		{"base has a backend", Options{Base: "backend all\n  server x 127.0.0.1:1\n"}, `base config already has a backend section named "all"`},
		{"base has the resolvers", Options{Base: "resolvers trackrouter\n  parse-resolv-conf\n"}, `resolvers section named "trackrouter"`},
		{"bind without port", Options{Bind: "127.0.0.1"}, "want [host]:port"},
		{"bind with newline", Options{Bind: "127.0.0.1\n:80"}, "unexpected character"},
		{"bind with space", Options{Bind: "0.0.0.0 :80"}, "unexpected character"},
		{"bind port out of range", Options{Bind: ":0"}, "port must be 1-65535"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Render(spec, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
			if r != nil {
				t.Errorf("want no config on error, got %d bytes", len(r.Config))
			}
		})
	}
}

func TestRenderOptions(t *testing.T) {
	spec := readSpec(t, filepath.Join(goldenDir, "minimal.input.yaml"))
	r, err := Render(spec, Options{Namespace: "prod", ClusterDomain: "k8s.example", Bind: "127.0.0.1:18080"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config
	for _, want := range []string{
		"  bind 127.0.0.1:18080\n",
		"  server production web-production.prod.svc.k8s.example:80 weight 1 ",
	} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("rendered config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestCheckReportsLines(t *testing.T) {
	bin := haproxytest.Binary(t)
	cfg := "global\n  maxconn 10\n\ndefaults\n  mode http\n  no-such-keyword 1\n"
	err := (Checker{Binary: bin}).Check(context.Background(), []byte(cfg))
	ce, ok := err.(*CheckError)
	if !ok {
		t.Fatalf("want *CheckError, got %v", err)
	}
	if len(ce.Problems) == 0 || ce.Problems[0].Line != 6 || !strings.Contains(ce.Problems[0].Msg, "no-such-keyword") {
		t.Errorf("want a problem at line 6 naming no-such-keyword, got %+v", ce.Problems)
	}
	if err := (Checker{Binary: "/nonexistent/haproxy"}).Check(context.Background(), []byte(cfg)); err == nil || ok && err == error(ce) {
		t.Errorf("missing binary: want an error, got %v", err)
	} else if _, isCheck := err.(*CheckError); isCheck {
		t.Errorf("missing binary must not look like a refused config: %v", err)
	}
}

// TestCheckDir: the config to check is written under Dir, so a pod whose
// root filesystem (and /tmp) is read-only can still check (found on the
// real node: every HAProxy pod stayed unready with "mkdir /tmp/...:
// read-only file system"). With no usable temporary directory at all but
// Dir, the check runs; with neither, the error says what it needed.
func TestCheckDir(t *testing.T) {
	bin := haproxytest.Binary(t)
	dir := t.TempDir()
	t.Setenv("TMPDIR", "/nonexistent-tmp")
	cfg := []byte("global\n  maxconn 10\n\ndefaults\n  mode http\n\nfrontend f\n  bind 127.0.0.1:18080\n")
	if err := (Checker{Binary: bin, Dir: dir}).Check(context.Background(), cfg); err != nil {
		t.Fatalf("check with Dir %s: %v", dir, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the check left %d files in Dir", len(left))
	}
	err := (Checker{Binary: bin}).Check(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "a directory for the config to check") {
		t.Errorf("no writable directory: want an error saying so, got %v", err)
	}
}

// TestStamp checks the typed data beside the bytes: the weights, and a stamp
// that a weight edit keeps and any other edit changes.
func TestStamp(t *testing.T) {
	spec := readSpec(t, "../examples/account-service/account-service.yaml")
	r, err := Render(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[ServerKey]int{
		{"internal", "internal"}: 100, {"canary", "canary"}: 5, {"canary", "production"}: 95,
		{"paid", "paid"}: 5, {"paid", "production"}: 95, {"enterprise", "production"}: 100,
	}
	if diff := cmp.Diff(want, r.Weights); diff != "" {
		t.Errorf("Weights (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(r.Stamp, StampPrefix) || !strings.Contains(string(r.Config), "  description "+r.Stamp+"\n") {
		t.Errorf("the config does not carry its stamp %q as the global description:\n%s", r.Stamp, r.Config)
	}

	spec.Backends["canary"]["canary"] = 50
	changed, err := Render(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if changed.Stamp != r.Stamp || changed.Weights[ServerKey{"canary", "canary"}] != 50 || bytes.Equal(changed.Config, r.Config) {
		t.Errorf("a weight edit must keep the stamp and change the weight and the bytes; stamps %s %s, weights %v", r.Stamp, changed.Stamp, changed.Weights)
	}
	spec.Groups["BETA"] = "canary"
	structural, err := Render(spec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if structural.Stamp == r.Stamp {
		t.Error("a new group must change the stamp")
	}
	mapped, err := Render(spec, Options{GroupsMap: "/run/groups.map"})
	if err != nil {
		t.Fatal(err)
	}
	delete(spec.Groups, "BETA")
	mapped2, err := Render(spec, Options{GroupsMap: "/run/groups.map"})
	if err != nil {
		t.Fatal(err)
	}
	if mapped.Stamp != mapped2.Stamp || maps.Equal(mapped.Groups, mapped2.Groups) {
		t.Errorf("in map mode a group edit must keep the stamp and change the map: %s %s %v %v", mapped.Stamp, mapped2.Stamp, mapped.Groups, mapped2.Groups)
	}
}

func TestRenderGroupsMap(t *testing.T) {
	bin := haproxytest.Binary(t)
	spec := readSpec(t, "../examples/account-service/account-service.yaml")
	dir := t.TempDir()
	mapPath := filepath.Join(dir, "groups.map")
	r, err := Render(spec, Options{GroupsMap: mapPath})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config
	want := "  use_backend %[req.fhdr(X-Traffic-Group),lower,map(" + mapPath + ",paid)]\n"
	if !strings.Contains(string(cfg), want) || strings.Contains(string(cfg), "-i FREE") {
		t.Errorf("want one map rule %q and no ACL per group:\n%s", want, cfg)
	}
	groups := GroupsMap(spec)
	if diff := cmp.Diff("enterprise enterprise\nfree canary\ninternal internal\n", string(groups)); diff != "" {
		t.Errorf("GroupsMap (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"enterprise": "enterprise", "free": "canary", "internal": "internal"}, ParseGroupsMap(groups)); diff != "" {
		t.Errorf("ParseGroupsMap (-want +got):\n%s", diff)
	}
	if err := os.WriteFile(mapPath, groups, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := (Checker{Binary: bin}).Check(context.Background(), cfg); err != nil {
		t.Errorf("haproxy -c: %v", err)
	}
	for _, bad := range []string{"groups.map", "/tmp/a b.map", "/tmp/a,b.map", "/tmp/a)b"} {
		if _, err := Render(spec, Options{GroupsMap: bad}); err == nil || !strings.Contains(err.Error(), "groups map path") {
			t.Errorf("GroupsMap %q: want an error naming the path, got %v", bad, err)
		}
	}
}

// TestCheckTimeout: a haproxy -c that hangs (a wrapper whose child keeps the
// output open, name resolution that never answers) ends at the timeout, its
// whole process group killed, and is not taken for a verdict.
func TestCheckTimeout(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "haproxy")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nsleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := Checker{Binary: wrapper, Timeout: 300 * time.Millisecond}.Check(context.Background(), []byte("global\n"))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the check took %s to give up", d)
	}
	var ce *CheckError
	if err == nil || errors.As(err, &ce) {
		t.Errorf("want an error that is not a verdict, got %v", err)
	}
}

// TestStampKeepsBaseServers: the stamp leaves out the weights of the
// spec's track servers only; a server of the user's base config keeps
// its weight in it (changing it needs a reload, not the Runtime API).
func TestStampKeepsBaseServers(t *testing.T) {
	spec := readSpec(t, "../examples/account-service/account-service.yaml")
	base := func(w int) string {
		return DefaultBase + fmt.Sprintf("\nbackend stats_local\n  server canary 127.0.0.1:9000 weight %d\n", w)
	}
	a, err := Render(spec, Options{Base: base(10)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Render(spec, Options{Base: base(20)})
	if err != nil {
		t.Fatal(err)
	}
	if a.Stamp == b.Stamp {
		t.Errorf("a base server's weight edit kept the stamp %s", a.Stamp)
	}
	if strings.Count(string(a.Config), stampPlaceholder) != 0 || strings.Count(string(a.Config), a.Stamp) != 1 {
		t.Errorf("the placeholder was not replaced by the stamp once:\n%s", a.Config)
	}
}

// TestReweightedIsRendered: a weight edit rendered from the last
// rendering's text (the fast way) gives the bytes, stamp, weights and map
// a full rendering gives, for every golden input, with and without the
// groups map and a base config, for random weights from 0 to 256.
func TestReweightedIsRendered(t *testing.T) {
	inputs, err := filepath.Glob("../testdata/render/*.input.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("inputs: %v %v", inputs, err)
	}
	base, err := os.ReadFile("../testdata/render/base-config.base.cfg")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	before := reweights.Load()
	defer func() {
		if n := reweights.Load() - before; n < int64(len(inputs)*3*20) {
			t.Errorf("%d renderings the fast way, want %d", n, len(inputs)*3*20)
		}
	}()
	for _, in := range inputs {
		for _, opt := range []Options{{}, {GroupsMap: "/run/groups.map"}, {Base: string(base), LatencyLog: "/run/log.sock"}} {
			spec := readSpec(t, in)
			if _, err := Render(spec, opt); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ {
				for _, b := range spec.Backends {
					for track := range b {
						b[track] = rng.IntN(weights.MaxWeight + 1)
					}
				}
				fast, err := Render(spec, opt)
				if err != nil {
					t.Fatal(err)
				}
				reuse.Lock()
				clear(reuse.last)
				reuse.Unlock()
				full, err := Render(spec, opt)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(full, fast); diff != "" {
					t.Fatalf("%s %+v: the fast way differs (-full +fast):\n%s", in, opt, diff)
				}
			}
		}
	}
	// A structural edit is rendered in full.
	spec := readSpec(t, "../examples/account-service/account-service.yaml")
	a, _ := Render(spec, Options{})
	spec.Groups["BETA"] = "canary"
	b, _ := Render(spec, Options{})
	if a.Stamp == b.Stamp || !strings.Contains(string(b.Config), "BETA") {
		t.Errorf("a new group kept the stamp or is not in the config")
	}
}
