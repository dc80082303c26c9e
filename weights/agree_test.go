package weights

import (
	"fmt"
	"strings"
	"testing"
)

// The cases where validate used to say ok while the cluster or the sidecar
// would see something else (issue 10, item 4), and the warnings.

const cmHead = `apiVersion: v1
kind: ConfigMap
metadata:
  name: NAME
  namespace: shop
  labels:
    trackrouter.dev/service: SVC
data:
`

const smallSpec = `    service: SVC
    port: 8080
    tracks:
      production: {version: v1}
    default: main
    backends:
      main: {production: 100}
`

func cmDoc(name, svc string) string {
	return strings.NewReplacer("NAME", name, "SVC", svc).Replace(cmHead + "  service.yaml: |\n" + smallSpec)
}

func TestParseRefusesWhatTheClusterSeesOtherwise(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"service.yaml key twice", cmDoc("a", "a") + "  service.yaml: |\n" + strings.ReplaceAll(smallSpec, "SVC", "a"),
			"f.yaml:17: data.service.yaml: duplicate key (first on line 9): Kubernetes would keep only one of them; remove one"},
		{"metadata twice", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nmetadata: {name: y}\n",
			"f.yaml:4: metadata: duplicate key (first on line 3)"},
		{"bare spec, two documents", strings.ReplaceAll(smallSpec, "SVC", "a") + "---\n" + strings.ReplaceAll(smallSpec, "SVC", "b"),
			"a bare service.yaml holds exactly one YAML document, this file has 2 (the sidecar refuses it)"},
		{"same service twice", cmDoc("a", "a") + "---\n" + cmDoc("b", "a"),
			"f.yaml:27: service: service a in namespace shop is also defined on line 10: their Deployments and Services would collide"},
		{"same ConfigMap twice", cmDoc("a", "a") + "---\n" + cmDoc("a", "b"),
			"f.yaml:27: ConfigMap shop/a is defined twice (the other spec starts on line 10): the cluster keeps only the one applied last"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			specs, err := Parse("f.yaml", []byte(strings.TrimLeft(tc.data, "\n")))
			if err == nil {
				t.Fatalf("no error; specs %d", len(specs))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
			if specs != nil {
				t.Errorf("specs returned with an error")
			}
		})
	}
}

func TestSameServiceInTwoNamespacesIsFine(t *testing.T) {
	data := cmDoc("a", "a") + "---\n" + strings.Replace(cmDoc("a", "a"), "namespace: shop", "namespace: staging", 1)
	specs, err := Parse("f.yaml", []byte(data))
	if err != nil || len(specs) != 2 {
		t.Fatalf("got %d specs, error %v", len(specs), err)
	}
}

func TestWarnings(t *testing.T) {
	unlabelled := strings.Replace(cmDoc("a", "a"), "  labels:\n    trackrouter.dev/service: a\n", "", 1)
	lint := `service: a
port: 8080
tracks:
  production: {version: v1}
  canary: {version: v2, replicas: 0}
  internal: {version: v3}
default: main
backends:
  main: {production: 95, canary: 5}
  spare: {production: 100}
`
	specs, err := Parse("f.yaml", []byte(unlabelled))
	if err != nil {
		t.Fatal(err)
	}
	wantLabel := "f.yaml:4: metadata: no label trackrouter.dev/service: a: track-controller ignores this ConfigMap (a sidecar given --configmap still reads it)"
	if got := specs[0].Warnings.Error(); got != wantLabel {
		t.Errorf("warning %q\nwant %q", got, wantLabel)
	}
	specs, err = Parse("f.yaml", []byte(lint))
	if err != nil {
		t.Fatal(err)
	}
	want := "f.yaml:6: tracks.internal: no backend sends requests to track internal (it still runs 2 replicas)\n" +
		"f.yaml:9: backends.main.canary: track canary has weight 5 in backend main but 0 replicas: nothing serves that share, HAProxy sends it to the other tracks\n" +
		"f.yaml:10: backends.spare: no group and not the default: no request reaches backend spare"
	if got := specs[0].Warnings.Error(); got != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", got, want)
	}
	// The labelled example has none.
	specs, err = Parse("f.yaml", []byte(cmDoc("a", "a")))
	if err != nil || len(specs[0].Warnings) != 0 {
		t.Errorf("labelled, fully used spec: warnings %v, error %v", specs[0].Warnings, err)
	}
}

// TestNamespaceIsAToken: a ConfigMap's namespace goes into haproxy.cfg and
// golden paths; anything but a DNS-1123 label is refused on its line.
func TestNamespaceIsAToken(t *testing.T) {
	for _, ns := range []string{`"a\nglobal\n  lua-load x.lua"`, `"x/../../victim"`, `"Shop"`, `"a b"`} {
		data := strings.Replace(cmDoc("a", "a"), "namespace: shop", "namespace: "+ns, 1)
		_, err := Parse("f.yaml", []byte(data))
		if err == nil || !strings.Contains(err.Error(), "f.yaml:5: metadata.namespace:") || !strings.Contains(err.Error(), "is not a namespace") {
			t.Errorf("namespace %s: %v", ns, err)
		}
	}
	big := strings.Replace(cmDoc("a", "a"), "  service.yaml: |\n", "  service.yaml: |\n    # "+strings.Repeat("x", MaxInputBytes)+"\n", 1)
	if _, err := Parse("f.yaml", []byte(big)); err == nil || !strings.Contains(err.Error(), "more than the limit of 1048576 bytes") {
		t.Errorf("a spec over 1 MiB in a ConfigMap: %v", err)
	}
}

// TestWarningsOfZeroes: a track at weight 0 everywhere, and a 0-replica
// track that is its backend's only live one.
func TestWarningsOfZeroes(t *testing.T) {
	spec := "service: a\nport: 8080\ntracks:\n  production: {version: v1, replicas: 0}\n  canary: {version: v2}\ndefault: main\nbackends:\n  main: {production: 100, canary: 0}\n"
	specs, err := Parse("f.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	want := "f.yaml:5: tracks.canary: track canary has weight 0 in every backend: it gets no request (it still runs 2 replicas)\n" +
		"f.yaml:8: backends.main.production: track production is the only one with weight in backend main and has 0 replicas: every request of main fails"
	if got := specs[0].Warnings.Error(); got != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", got, want)
	}
}

// TestTabInsideALiteralBlock: the error names the tab's line in the
// manifest, not the block's first line.
func TestTabInsideALiteralBlock(t *testing.T) {
	data := strings.Replace(cmDoc("a", "a"), "    port: 8080\n", "    port: 8080\n\t  header: X\n", 1)
	_, err := Parse("f.yaml", []byte(data))
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:12: invalid YAML: found a tab character") {
		t.Errorf("got %v", err)
	}
}

// TestWarningsOfSums: a backend whose weights do not sum to 100 while every
// other backend's do is most likely an edit that forgot weights are
// relative; with no backend at 100, sums mean nothing.
func TestWarningsOfSums(t *testing.T) {
	base := "service: a\nport: 8080\ntracks:\n  production: {version: v1}\n  canary: {version: v2}\ngroups:\n  FREE: free\ndefault: main\nbackends:\n  main: {production: %d}\n  free: {canary: %d, production: %d}\n"
	for _, tc := range []struct {
		name                string
		main, canary, freeP int
		want                string
	}{
		{"95 edited to 50", 100, 5, 50, "f.yaml:11: backends.free: weights sum to 55, not 100 as in other backends: weights are relative, so backend free gives canary 9.1%, production 90.9%"},
		{"every sum 100", 100, 5, 95, ""},
		{"relative weights everywhere", 1, 1, 3, ""},
		{"small ratios are ratios", 100, 1, 1, ""},
		{"after a rollback", 100, 0, 95, "f.yaml:5: tracks.canary: track canary has weight 0 in every backend: it gets no request (it still runs 2 replicas)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs, err := Parse("f.yaml", []byte(fmt.Sprintf(base, tc.main, tc.canary, tc.freeP)))
			if err != nil {
				t.Fatal(err)
			}
			if got := specs[0].Warnings.Error(); got != tc.want {
				t.Errorf("warnings:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestZeroReplicasWithAddress: a track with an address: is served there,
// whatever its Deployment runs, so 0 replicas is no warning, in a bare
// spec and in a ConfigMap alike; without the address it is, in both.
func TestZeroReplicasWithAddress(t *testing.T) {
	bare := "service: a\nport: 8080\ntracks:\n  production: {version: v1%s}\n  canary: {version: v2, replicas: 0%s}\ndefault: main\nbackends:\n  main: {production: 95, canary: 5}\n"
	cm := func(spec string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {trackrouter.dev/service: a}\ndata:\n  service.yaml: |\n    " + strings.ReplaceAll(strings.TrimSuffix(spec, "\n"), "\n", "\n    ") + "\n"
	}
	with := fmt.Sprintf(bare, `, address: "10.0.0.1:80"`, `, address: "10.0.0.2:80"`)
	without := fmt.Sprintf(bare, "", "")
	for _, tc := range []struct {
		name, data string
		warn       bool
	}{
		{"bare, address", with, false},
		{"ConfigMap, address", cm(with), false},
		{"bare, no address", without, true},
		{"ConfigMap, no address", cm(without), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs, err := Parse("f.yaml", []byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(specs[0].Warnings.Error(), "has weight 5 in backend main but 0 replicas")
			if got != tc.warn {
				t.Errorf("0-replica warning: got %v, want %v (warnings: %v)", got, tc.warn, specs[0].Warnings)
			}
		})
	}
}

// TestWarningsOfSumsBesideARollback: a backend rolled back to one live
// track says nothing of percent, but one at 100 does.
func TestWarningsOfSumsBesideARollback(t *testing.T) {
	spec := "service: a\nport: 8080\ntracks:\n  production: {version: v1}\n  canary: {version: v2}\n  paid: {version: v1}\n  internal: {version: v3}\ngroups:\n  FREE: canary\n  PAID: paid\n  INTERNAL: internal\ndefault: canary\nbackends:\n  internal: {internal: 100}\n  canary: {canary: 0, production: 95}\n  paid: {paid: 50, production: 95}\n"
	specs, err := Parse("f.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	if got := specs[0].Warnings.Error(); !strings.Contains(got, "f.yaml:16: backends.paid: weights sum to 145") {
		t.Errorf("warnings: %s", got)
	}
}
