package haproxyconf

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/weights"
)

// FuzzParseRender feeds arbitrary bytes to the spec parser. It must never
// panic, and every spec it accepts must render to a config that haproxy -c
// accepts: validation is what keeps user input out of haproxy.cfg.
// Run it with: go test ./haproxyconf -run '^$' -fuzz FuzzParseRender -fuzztime 60s
func FuzzParseRender(f *testing.F) {
	bin := haproxytest.Binary(f)
	seeds, _ := filepath.Glob(filepath.Join(goldenDir, "*.input.yaml"))
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("service: a\nport: 1\ntracks: {b: {version: c, address: \"x:1\"}}\ngroups: {\"#\": d}\ndefault: d\nbackends: {d: {b: 256}}\n"))
	f.Add([]byte("service: a\nport: 1\nheader: \"X\\nY\"\ntracks: {b: {version: c}}\ndefault: d\nbackends: {d: {b: 1}}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := weights.Parse("fuzz.yaml", data)
		if err != nil {
			if specs != nil {
				t.Fatalf("Parse returned specs and an error: %v", err)
			}
			return
		}
		for _, s := range specs {
			r, err := Render(s, Options{})
			if err != nil {
				t.Fatalf("an accepted spec does not render: %v\ninput:\n%s", err, data)
			}
			if err := (Checker{Binary: bin}).Check(context.Background(), r.Config); err != nil {
				t.Fatalf("an accepted spec renders a config haproxy refuses: %v\ninput:\n%s\nconfig:\n%s", err, data, r.Config)
			}
		}
	})
}
