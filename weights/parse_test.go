package weights

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/internal/testing/speccorpus"
)

// base is a valid bare spec; line numbers in the cases refer to it.
const base = speccorpus.Base

func TestParseValid(t *testing.T) {
	s, err := ParseService(Source{File: "service.yaml"}, []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		Service:  "account-service",
		Port:     8080,
		Header:   "X-Traffic-Group",
		Template: "account-service", // defaults to the service
		Router:   Router{Replicas: DefaultRouterReplicas},
		Tracks: map[string]Track{
			"internal":   {Version: "v1.18.0", Replicas: 2},
			"canary":     {Version: "v1.17.0", Replicas: 4},
			"paid":       {Version: "v1.15.0", Replicas: DefaultTrackReplicas},
			"production": {Version: "v1.15.0", Replicas: 10},
		},
		Stages:  []string{"internal", "canary", "paid", "production"}, // as written
		Groups:  map[string]string{"INTERNAL": "internal", "FREE": "canary", "ENTERPRISE": "enterprise"},
		Default: "paid",
		Backends: map[string]Backend{
			"internal":   {"internal": 100},
			"canary":     {"canary": 5, "production": 95},
			"paid":       {"paid": 5, "production": 95},
			"enterprise": {"production": 100},
		},
		TrustAny: true, // no trustedSources: every caller, as before the field
		Source:   Source{File: "service.yaml"},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("ParseService (-want +got):\n%s", diff)
	}
}

// edit replaces old with new in base, failing the test if old is missing.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("base has no %q", old)
	}
	return strings.Replace(base, old, new, 1)
}

func TestParseErrors(t *testing.T) {
	for _, tc := range speccorpus.Bad {
		t.Run(tc.Name, func(t *testing.T) {
			_, err := ParseService(Source{File: "service.yaml"}, []byte(edit(t, tc.Old, tc.New)))
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("want an ErrorList, got %v", err)
			}
			var got []speccorpus.Want
			for _, fe := range list {
				if fe.File != "service.yaml" {
					t.Errorf("error %q names file %q", fe, fe.File)
				}
				got = append(got, speccorpus.Want{Line: fe.Line, Field: fe.Field, Msg: fe.Msg})
			}
			substr := cmp.Comparer(func(a, b string) bool {
				return a == b || strings.Contains(a, b) || strings.Contains(b, a)
			})
			if tc.Want[0].Line == 0 { // syntax errors: any line, message checked
				got[0].Line = 0
			}
			if diff := cmp.Diff(tc.Want, got, substr); diff != "" {
				t.Errorf("errors (-want +got):\n%s\nerror text:\n%v", diff, err)
			}
		})
	}
}

func TestParseManifestLines(t *testing.T) {
	data, err := os.ReadFile("../examples/account-service/account-service.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := Parse("examples/account-service.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].Service != "account-service" || specs[0].Source.Namespace != "default" || specs[0].Source.Name != "account-service" {
		t.Fatalf("want the account-service spec from ConfigMap default/account-service, got %+v", specs)
	}
	// The error must point at the manifest line, not the line inside the block.
	bad := strings.Replace(string(data), "{canary: 5,", "{canary: 300,", 1)
	lines := strings.Split(bad, "\n")
	wantLine := 0
	for i, l := range lines {
		if strings.Contains(l, "canary: 300") {
			wantLine = i + 1
		}
	}
	_, err = Parse("examples/account-service.yaml", []byte(bad))
	want := "examples/account-service.yaml:" + strconv.Itoa(wantLine) + ": backends.canary.canary: weight 300 is out of range 0-256"
	if err == nil || err.Error() != want {
		t.Errorf("got error %v\nwant %s", err, want)
	}
}

func TestParseManifests(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		services []string
		err      string
	}{
		{"two configmaps and a deployment", cm("a", "ns1") + "---\nkind: Deployment\napiVersion: apps/v1\nmetadata: {name: x}\n---\n" + cm("b", "ns2"), []string{"a", "b"}, ""},
		{"list", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(cm("c", "x"), "\n", "\n  "), []string{"c"}, ""},
		{"configmap without the key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {other: y}\n", nil, "no service spec found"},
		{"label mismatch", strings.Replace(cm("a", "ns"), "trackrouter.dev/service: a", "trackrouter.dev/service: b", 1), nil, `label "b" does not match service "a"`},
		{"empty", "", nil, "no service spec found"},
		{"oversized", strings.Repeat("#", MaxFileBytes+1), nil, "more than the limit"},
		{"a scalar", "hello\n", nil, "want a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			specs, err := Parse("f.yaml", []byte(tc.data))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want error containing %q, got %v", tc.err, err)
				}
				if specs != nil {
					t.Errorf("want no spec on error, got %d", len(specs))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range specs {
				got = append(got, s.Service)
			}
			if diff := cmp.Diff(tc.services, got); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
		})
	}
}

func cm(service, ns string) string {
	return `apiVersion: v1
kind: ConfigMap
metadata:
  name: ` + service + `
  namespace: ` + ns + `
  labels: {trackrouter.dev/service: ` + service + `}
data:
  service.yaml: |
    service: ` + service + `
    port: 80
    tracks: {production: {version: v1}}
    default: all
    backends: {all: {production: 1}}
`
}

func TestWeightChanges(t *testing.T) {
	old, err := ParseService(Source{}, []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(base, "{canary: 5, production: 95}", "{canary: 10, production: 90}", 1)
	changed = strings.Replace(changed, "  enterprise: {production: 100}\n", "  enterprise: {production: 100, paid: 1}\n", 1)
	nw, err := ParseService(Source{}, []byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range WeightChanges(old, nw) {
		got = append(got, c.String())
	}
	want := []string{"canary: canary 5 (5.0%)->10 (10.0%), production 95 (95.0%)->90 (90.0%)", "enterprise: paid none->1 (1.0%)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WeightChanges (-want +got):\n%s", diff)
	}
	if c := WeightChanges(old, old); len(c) != 0 {
		t.Errorf("same spec: want no change, got %v", c)
	}
}

// TestErrorsQuoteLittle: a huge value (a pasted file, a symlink to
// /etc/passwd) is quoted in errors by its first 100 bytes and its size.
func TestErrorsQuoteLittle(t *testing.T) {
	long := strings.Repeat("x", 5000)
	for _, input := range []string{
		"service: " + long + "\n",
		"service: a\nport: " + long + "\n",
		"service: a\nheader: " + long + "\n",
	} {
		_, err := ParseService(Source{File: "service.yaml"}, []byte(input))
		var list ErrorList
		if !errors.As(err, &list) {
			t.Fatalf("want field errors for %.40q, got %v", input, err)
		}
		sized := false
		for _, fe := range list {
			if len(fe.Error()) > 300 {
				t.Errorf("error quotes too much (%d bytes): %.300s", len(fe.Error()), fe.Error())
			}
			sized = sized || strings.Contains(fe.Error(), "... (5000 bytes)")
		}
		if !sized {
			t.Errorf("no error says the value was cut: %v", err)
		}
	}
}

func TestAutoReplicas(t *testing.T) {
	spec := "service: a\nport: 80\ntracks:\n  production: {version: v1, replicas: auto}\ndefault: all\nbackends:\n  all: {production: 1}\n"
	s, err := ParseService(Source{File: "service.yaml"}, []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	if tr := s.Tracks["production"]; !tr.Autoscaled || tr.Replicas != 0 {
		t.Errorf("replicas: auto: got %+v", tr)
	}
	_, err = ParseService(Source{File: "service.yaml"}, []byte(strings.Replace(spec, "replicas: auto", "replicas: many", 1)))
	if err == nil || !strings.Contains(err.Error(), "service.yaml:4: tracks.production.replicas: want an integer") {
		t.Errorf("replicas: many: want a field error, got %v", err)
	}
}

func TestTabSaysTab(t *testing.T) {
	_, err := ParseService(Source{File: "service.yaml"}, []byte("service: a\nport: 80\ntracks:\n\tproduction: {version: v1}\n"))
	if err == nil || !strings.Contains(err.Error(), "service.yaml:4: invalid YAML:") || !strings.Contains(err.Error(), "a tab: YAML indents with spaces only") {
		t.Errorf("want the line and the word tab, got %v", err)
	}
}

func TestFoldedBlockSaysSo(t *testing.T) {
	manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  service.yaml: >\n    service: a\n    port: 80\n"
	_, err := Parse("cm.yaml", []byte(manifest))
	if err == nil || !strings.Contains(err.Error(), "cm.yaml:6: data.service.yaml: a folded block (>)") {
		t.Errorf("want the line of the block and what to write, got %v", err)
	}
}

func TestTabInIndentationNamesItsLine(t *testing.T) {
	_, err := ParseService(Source{File: "service.yaml"}, []byte("service: a\nport: 80\ntracks:\n  production:\n    version: v1\n\t   replicas: 2\n"))
	if err == nil || !strings.Contains(err.Error(), "service.yaml:6: invalid YAML: found a tab character") {
		t.Errorf("want line 6, where the tab is, got %v", err)
	}
}

func TestHelmValuesAreNotASpec(t *testing.T) {
	specs, err := Parse("values.yaml", []byte("replicaCount: 1\nservice:\n  type: ClusterIP\n  port: 80\n"))
	if len(specs) != 0 || err == nil || !strings.Contains(err.Error(), "no service spec found") {
		t.Errorf("a Helm values file: want no spec (\"no service spec found\"), got %v, %v", specs, err)
	}
}

func TestTrailingDocumentSeparator(t *testing.T) {
	spec := "service: a\nport: 80\ntracks:\n  production: {version: v1}\ndefault: all\nbackends:\n  all: {production: 1}\n---\n"
	if _, err := ParseService(Source{File: "service.yaml"}, []byte(spec)); err != nil {
		t.Errorf("a trailing --- (what validate accepts): %v", err)
	}
	if _, err := ParseService(Source{File: "service.yaml"}, []byte(spec+spec)); err == nil || !strings.Contains(err.Error(), "want exactly one YAML document, found 2") {
		t.Errorf("two specs: want an error, got %v", err)
	}
}

func TestManifestGivenAsServiceYAML(t *testing.T) {
	_, err := ParseService(Source{File: "cm.yaml"}, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  service.yaml: |\n    service: a\n"))
	if err == nil || !strings.Contains(err.Error(), "cm.yaml:2: kind: a Kubernetes manifest (kind ConfigMap), not a service.yaml") {
		t.Errorf("want the manifest named, got %v", err)
	}
}

// TestIndentationErrorNamesItsLine: yaml.v3 names the line a mapping starts
// on; the error must name the line whose indentation is wrong.
func TestIndentationErrorNamesItsLine(t *testing.T) {
	bare := "# a comment\nservice: a\nport: 80\ntracks:\n  production: {version: v1}\n%s: {version: v2}\ndefault: all\nbackends:\n  all: {production: 1}\n"
	manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  service.yaml: |\n    service: a\n    port: 80\n    tracks:\n      production: {version: v1}\n%s: {version: v2}\n    default: all\n    backends:\n      all: {production: 1}\n"
	for _, tc := range []struct {
		name, doc, key, want string
	}{
		{"bare, one space too few", bare, " canary", "service.yaml:6: invalid YAML: did not find expected key (indented half way between the keys of line 5 and those of line 4"},
		{"bare, one space too many", bare, "   canary", "service.yaml:6: invalid YAML: did not find expected key (indented 1 space more than the keys of line 5 it should line up with)"},
		{"a list item's key", "list:\n  - a: 1\n     b: 2\n%s: x\n", "", "service.yaml:3: invalid YAML: mapping values are not allowed in this context (indented 1 space more than the keys of line 2 it should line up with)"},
		{"bare, a tab and spaces", bare, "\t canary", "service.yaml:6: invalid YAML: found character that cannot start any token (a tab: YAML indents with spaces only)"},
		{"block, one space too few", manifest, "     canary", "service.yaml:11: invalid YAML: did not find expected key (indented half way between the keys of line 10 and those of line 9"},
		{"block, one space too many", manifest, "       canary", "service.yaml:11: invalid YAML: did not find expected key (indented 1 space more than the keys of line 10 it should line up with)"},
		{"block, out of the block", manifest, "   canary", "service.yaml:11: invalid YAML: did not find expected key (indented half way between the keys of line 9 and those of line 6"},
		{"block, a tab and spaces", manifest, "    \t  canary", "service.yaml:11: invalid YAML: found character that cannot start any token (a tab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("service.yaml", []byte(fmt.Sprintf(tc.doc, tc.key)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want %q, got %v", tc.want, err)
			}
		})
	}
}

// TestAnalysis: a stage's analysis with defaults filled in, and bad input
// refused with the field and its line.
func TestAnalysis(t *testing.T) {
	spec := "service: a\nport: 80\ntracks:\n  canary:\n    version: v2\n    analysis:\n%s  production: {version: v1}\ndefault: all\nbackends:\n  all: {production: 95, canary: 5}\n"
	s, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, "      bake: 5m\n      maxErrorIncrease: 1\n      lowTraffic: promote\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultAnalysis
	want.Bake, want.MaxErrorIncrease, want.LowTraffic = 5*time.Minute, 1, "promote"
	if diff := cmp.Diff(&want, s.Tracks["canary"].Analysis); diff != "" {
		t.Errorf("analysis (-want +got):\n%s", diff)
	}
	if s.Tracks["production"].Analysis != nil {
		t.Error("a track without analysis: got one")
	}
	for _, tc := range []struct {
		name, fields, want string
	}{
		{"bake shorter than its interval", "      bake: 20s\n", "service.yaml:7: tracks.canary.analysis.bake: bake 20s is shorter than its interval 30s: the stage would never be judged"},
		{"a negative limit", "      maxP95Increase: -5\n", "service.yaml:7: tracks.canary.analysis.maxP95Increase: maxP95Increase -5: a percent of the baseline's, 0 or more"},
		{"an error limit over 100 points", "      maxErrorIncrease: 150\n", "service.yaml:7: tracks.canary.analysis.maxErrorIncrease: maxErrorIncrease 150: percentage points from 0 to 100"},
		{"an unknown lowTraffic", "      lowTraffic: ignore\n", `service.yaml:7: tracks.canary.analysis.lowTraffic: lowTraffic "ignore": want wait (bake on, the default), promote or rollback`},
		{"not a duration", "      interval: 30\n", `service.yaml:7: tracks.canary.analysis.interval: want a duration such as 30s or 10m, found "30"`},
		{"not a number", "      maxP99Increase: lots\n", `service.yaml:7: tracks.canary.analysis.maxP99Increase: want a number (percent, 0 or more), found the string "lots"`},
		{"an unknown field", "      gate: qa\n", "service.yaml:7: tracks.canary.analysis.gate: unknown field"},
		{"an interval longer than the default bake", "      interval: 1h\n", "service.yaml:7: tracks.canary.analysis.interval: interval 1h0m0s is longer than the bake (10m0s by default)"},
		{"a negative bake", "      bake: -1m\n", "service.yaml:7: tracks.canary.analysis.bake: bake -1m0s: more than 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, tc.fields)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want %q, got %v", tc.want, err)
			}
		})
	}
	// A change of the analysis is a change of the spec, said as one.
	old, _ := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, "      bake: 5m\n")))
	changes := SpecChanges(old, s)
	if len(changes) != 1 || changes[0].Field != "tracks.canary.analysis" || !strings.Contains(changes[0].String(), "lowTraffic wait") {
		t.Errorf("changes: %v", changes)
	}
}

// TestGates: approval and a Job, and what is not a gate refused with the
// field and its line.
func TestGates(t *testing.T) {
	spec := "service: a\nport: 80\ntracks:\n  internal:\n    version: v2\n    gates:\n%s  production: {version: v1}\ndefault: all\nbackends:\n  all: {production: 100, internal: 0}\n"
	job := "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          metadata: {name: suite}\n          spec:\n            template:\n              spec:\n                restartPolicy: Never\n                containers: [{name: t, image: tests:1}]\n"
	s, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, job+"      - approval\n")))
	if err != nil {
		t.Fatal(err)
	}
	g := s.Tracks["internal"].Gates
	if len(g) != 2 || g[0].Job == nil || g[0].Job.Spec.Template.Spec.Containers[0].Image != "tests:1" || !g[1].Approval {
		t.Fatalf("gates %+v", g)
	}
	if w := GateWords(g); w != "job suite (tests:1), approval" {
		t.Errorf("words %q", w)
	}
	for _, tc := range []struct {
		name, gates, want string
	}{
		{"an unknown gate", "      - qa\n", `service.yaml:7: tracks.internal.gates[0]: want approval or job: (a batch/v1 Job), found the string "qa"`},
		{"approvals, misspelt", "      - approvals\n", `service.yaml:7: tracks.internal.gates[0]: want approval or job: (a batch/v1 Job), found the string "approvals"`},
		{"an unknown kind of gate", "      - test: {}\n", "service.yaml:7: tracks.internal.gates[0].test: unknown field"},
		{"not a list", "      approval: true\n", "service.yaml:7: tracks.internal.gates: want a list of gates"},
		{"a Job template that is not a Job", "      - job:\n          apiVersion: apps/v1\n          kind: Deployment\n          spec: {}\n",
			`service.yaml:8: tracks.internal.gates[0].job: apiVersion "apps/v1", kind "Deployment": a job gate is a batch/v1 Job`},
		{"a field a Job does not have", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {tempalte: {}}\n",
			`service.yaml:8: tracks.internal.gates[0].job: not a Job: json: unknown field "tempalte"`},
		{"a Job without containers", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {}}}\n",
			"service.yaml:8: tracks.internal.gates[0].job: the Job has no containers"},
		{"a Job without restartPolicy", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {containers: [{name: t, image: i}]}}}\n",
			`restartPolicy "": a Job's pods need Never or OnFailure`},
		{"a Job in another namespace", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          metadata: {namespace: kube-system}\n          spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: i}]}}}\n",
			`metadata.namespace "kube-system": a gate's Job runs in the spec's namespace`},
		{"a Job with a ServiceAccount", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {serviceAccountName: admin, restartPolicy: Never, containers: [{name: t, image: i}]}}}\n",
			"service.yaml:10: tracks.internal.gates[0].job.spec.template.spec.serviceAccountName: not allowed in a gate's Job"},
		{"a privileged Job", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: i, securityContext: {privileged: true}}]}}}\n",
			"service.yaml:10: tracks.internal.gates[0].job.spec.template.spec.containers[0].securityContext.privileged: not allowed in a gate's Job"},
		{"a Job that reads a Secret", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec:\n            template:\n              spec:\n                restartPolicy: Never\n                containers:\n                  - name: t\n                    image: i\n                    env:\n                      - name: P\n                        valueFrom: {secretKeyRef: {name: db-admin, key: password}}\n",
			"service.yaml:19: tracks.internal.gates[0].job.spec.template.spec.containers[0].env[0].valueFrom: not allowed in a gate's Job"},
		{"a Job with envFrom", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: i, envFrom: [{secretRef: {name: s}}]}]}}}\n",
			"containers[0].envFrom: not allowed"},
		{"a Job with a Secret volume", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, volumes: [{name: s, secret: {secretName: s}}], containers: [{name: t, image: i}]}}}\n",
			"spec.template.spec.volumes: not allowed"},
		{"a Job on a chosen node", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, nodeName: n1, containers: [{name: t, image: i}]}}}\n",
			"spec.template.spec.nodeName: not allowed"},
		{"a Job with tolerations", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, tolerations: [{operator: Exists}], containers: [{name: t, image: i}]}}}\n",
			"spec.template.spec.tolerations: not allowed"},
		{"a Job with pull secrets", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, imagePullSecrets: [{name: r}], containers: [{name: t, image: i}]}}}\n",
			"spec.template.spec.imagePullSecrets: not allowed"},
		{"a Job on a host port", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: i, ports: [{containerPort: 80, hostPort: 80}]}]}}}\n",
			"containers[0].ports: not allowed"},
		{"a Job as root", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, securityContext: {runAsUser: 0}, containers: [{name: t, image: i}]}}}\n",
			"spec.template.spec.securityContext.runAsUser: 0 in a gate's Job"},
		{"a Job as root written 00", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: i, securityContext: {runAsUser: 00}}]}}}\n",
			"securityContext.runAsUser: 00 in a gate's Job"},
		{"a Job as root allowed", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, securityContext: {runAsNonRoot: false}, containers: [{name: t, image: i}]}}}\n",
			"securityContext.runAsNonRoot: false in a gate's Job"},
		{"a Job unconfined", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {metadata: {annotations: {container.apparmor.security.beta.kubernetes.io/t: unconfined}}, spec: {restartPolicy: Never, containers: [{name: t, image: i}]}}}\n",
			"job.spec.template.metadata.annotations.container.apparmor.security.beta.kub... (112 bytes): an annotation of Kubernetes' own"},
		{"a Job that may escalate", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, containers: [{name: t, image: i, securityContext: {allowPrivilegeEscalation: true}}]}}}\n",
			"true in a gate's Job: it runs as a non-root user that cannot escalate"},
		{"a Job with an unconfined seccomp profile", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, securityContext: {seccompProfile: {type: Unconfined}}, containers: [{name: t, image: i}]}}}\n",
			"securityContext.seccompProfile: not allowed"},
		{"a Job with a runtime class", "      - job:\n          apiVersion: batch/v1\n          kind: Job\n          spec: {template: {spec: {restartPolicy: Never, runtimeClassName: x, containers: [{name: t, image: i}]}}}\n",
			"spec.template.spec.runtimeClassName: not allowed"},
		{"two approvals", "      - approval\n      - approval\n", "service.yaml:8: tracks.internal.gates[1]: a second approval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, tc.gates)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want %q, got %v", tc.want, err)
			}
		})
	}
	// A Job's command changed is a change of the gates.
	other, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, strings.Replace(job, "[{name: t,", "[{name: t, args: [-v],", 1)+"      - approval\n")))
	if err != nil {
		t.Fatal(err)
	}
	if c := SpecChanges(s, other); len(c) != 1 || c[0].Field != "tracks.internal.gates" || !strings.Contains(c[0].String(), "a Job's spec changed") {
		t.Errorf("changes: %v", c)
	}
}

func TestLastStageAnalysisWarns(t *testing.T) {
	s, err := ParseService(Source{File: "service.yaml"}, []byte("service: a\nport: 80\ntracks:\n  canary: {version: v2}\n  production:\n    version: v1\n    analysis: {bake: 5m}\ndefault: all\nbackends:\n  all: {production: 95, canary: 5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0].Error(), "service.yaml:5: tracks.production: production is the last stage") {
		t.Errorf("warnings %v", s.Warnings)
	}
}

// TestTrustedSources: addresses and ranges in their canonical form, any,
// and what is not a source refused (or warned about) with its line.
func TestTrustedSources(t *testing.T) {
	spec := "service: a\nport: 80\ntracks:\n  production: {version: v1}\ndefault: all\nbackends:\n  all: {production: 100}\ntrustedSources: %s\n"
	s, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, "[10.0.0.0/8, 192.168.1.5, 'fd00::/8', '2001:db8::1']")))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.TrustedWords(); got != "10.0.0.0/8, 192.168.1.5/32, fd00::/8, 2001:db8::1/128" || s.TrustAny {
		t.Errorf("trusted %q (any %v)", got, s.TrustAny)
	}
	if s, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, "any"))); err != nil || !s.TrustAny {
		t.Errorf("any: %v, %v", err, s)
	}
	for _, tc := range []struct{ name, value, want string }{
		{"not a CIDR", "[10.0.0.0/33]", `service.yaml:8: trustedSources[0]: "10.0.0.0/33" is not a CIDR range`},
		{"not an address", "[gateway.local]", `service.yaml:8: trustedSources[0]: "gateway.local" is not an IP address or a CIDR range`},
		{"host bits", "[10.1.2.3/8]", `service.yaml:8: trustedSources[0]: "10.1.2.3/8" has host bits set: the range is 10.0.0.0/8`},
		{"empty", "[]", "service.yaml:8: trustedSources: an empty list trusts no caller"},
		{"a word", "all", `service.yaml:8: trustedSources: want any, or a list of addresses and CIDR ranges`},
		{"a zone", "['fe80::1%eth0']", `is not an IP address or a CIDR range`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, tc.value)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want %q, got %v", tc.want, err)
			}
		})
	}
	s, err = ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, "[0.0.0.0/0, 10.0.0.0/8]")))
	if err != nil || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0].Error(), "trustedSources[0]: 0.0.0.0/0 trusts every IPv4 caller") {
		t.Errorf("0.0.0.0/0 with another: %v, warnings %v", err, s.Warnings)
	}
	// IPv6 ranges that hold the IPv4-mapped addresses trust IPv4 callers
	// (HAProxy matches them so); mapped forms are written as IPv4;
	// duplicates are said.
	for _, tc := range []struct{ value, words, warning string }{
		{`["::/0"]`, "::/0", "trusts IPv4 callers too"},
		{`["::/1", 10.0.0.0/8]`, "::/1, 10.0.0.0/8", "trusts IPv4 callers too"},
		{`["::ffff:10.0.0.1", "::ffff:10.0.0.0/104"]`, "10.0.0.1/32, 10.0.0.0/8", ""},
		{`[10.0.0.1/32, "10.0.0.1"]`, "10.0.0.1/32, 10.0.0.1/32", "is listed twice"},
		{`["fd00::/8"]`, "fd00::/8", ""},
	} {
		s, err := ParseService(Source{File: "service.yaml"}, []byte(fmt.Sprintf(spec, tc.value)))
		if err != nil {
			t.Fatalf("%s: %v", tc.value, err)
		}
		if s.TrustedWords() != tc.words || (tc.warning == "") != (len(s.Warnings) == 0) || tc.warning != "" && !strings.Contains(s.Warnings.Error(), tc.warning) {
			t.Errorf("%s: %q, warnings %v; want %q, %q", tc.value, s.TrustedWords(), s.Warnings, tc.words, tc.warning)
		}
	}
}

// TestReorderIsAChange: the tracks' order is the release's path.
func TestReorderIsAChange(t *testing.T) {
	a, err := ParseService(Source{File: "a"}, []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseService(Source{File: "b"}, []byte(strings.Replace(strings.Replace(base, "  production: {version: v1.15.0, replicas: 10}\n", "", 1), "  canary:", "  production: {version: v1.15.0, replicas: 10}\n  canary:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	c := SpecChanges(a, b)
	if len(c) != 1 || c[0].Field != "stages" || !strings.Contains(c[0].String(), "internal -> production -> canary -> paid") {
		t.Errorf("changes %v", c)
	}
}

func TestAnalysisNullIsNone(t *testing.T) {
	s, err := ParseService(Source{File: "service.yaml"}, []byte("service: a\nport: 80\ntracks:\n  canary: {version: v2, analysis: ~}\n  production: {version: v1}\ndefault: all\nbackends:\n  all: {production: 95, canary: 5}\n"))
	if err != nil || s.Tracks["canary"].Analysis != nil {
		t.Errorf("analysis: ~ gave %v, %+v; want no analysis", err, s.Tracks["canary"].Analysis)
	}
}

// TestUnknownFieldSuggests: a misspelt field is answered with the field
// meant, at the same distance as trackctl's flags.
func TestUnknownFieldSuggests(t *testing.T) {
	for text, want := range map[string]string{
		"service: a\nport: 80\ntrack:\n  production: {version: v1}\ndefault: all\nbackends:\n  all: {production: 100}\n":              "service.yaml:3: track: unknown field (did you mean tracks?",
		"service: a\nport: 80\ntracks:\n  production: {version: v1, replica: 2}\ndefault: all\nbackends:\n  all: {production: 100}\n": "tracks.production.replica: unknown field (did you mean replicas?",
	} {
		_, err := ParseService(Source{File: "service.yaml"}, []byte(text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q, got %v", want, err)
		}
	}
}
