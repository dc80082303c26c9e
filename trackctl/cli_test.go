package trackctl

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

var update = flag.Bool("update", false, "rewrite the golden help files in testdata/trackctl/help")

// TestCLIMessages: each mistake a new user makes gets its exact message on
// stderr, nothing on stdout, and exit 2 (issue 10, items 1 and 7).
func TestCLIMessages(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"render", "--servce", "x", example},
			"trackctl render: unknown flag: --servce (did you mean --service?)\nSee 'trackctl render --help'.\n"},
		{[]string{"validate", "--kubeconfig", "x"},
			"trackctl validate: unknown flag: --kubeconfig\nSee 'trackctl validate --help'.\n"},
		{[]string{"check", "--golde", "g", "dir"},
			"trackctl check: unknown flag: --golde (did you mean --golden?)\nSee 'trackctl check --help'.\n"},
		{[]string{"render", "--base"},
			"trackctl render: flag needs an argument: --base\nSee 'trackctl render --help'.\n"},
		{[]string{"diff", "-o"},
			"trackctl diff: flag needs an argument: 'o' in -o\nSee 'trackctl diff --help'.\n"},
		{[]string{"render", "-o", "out.cfg", example},
			"trackctl render: -o \"out.cfg\": want one of cfg, json, yaml (-o is the output format; write to a file with --output-file)\nSee 'trackctl render --help'.\n"},
		{[]string{"validate", "-o", "table", example},
			"trackctl validate: -o \"table\": want one of text, json, yaml\nSee 'trackctl validate --help'.\n"},
		{[]string{"rendr", example},
			"trackctl: unknown command \"rendr\" for \"trackctl\"\n\nDid you mean this?\n\trender\nSee 'trackctl --help'.\n"},
		{[]string{"validate"},
			"trackctl validate: want at least one FILE\nSee 'trackctl validate --help'.\n"},
		{[]string{"diff", example},
			"trackctl diff: want OLD and NEW files, got 1 argument(s)\nSee 'trackctl diff --help'.\n"},
		{[]string{"check", "../examples"},
			"trackctl check: --golden DIR is required: the directory of golden haproxy.cfg files\nSee 'trackctl check --help'.\n"},
		{[]string{"check", example, "--golden", "g"},
			"trackctl check: ../examples/account-service/account-service.yaml is not a directory: trackctl validate ../examples/account-service/account-service.yaml checks one file\nSee 'trackctl check --help'.\n"},
		{[]string{"version", "extra"},
			"trackctl version: takes no arguments, got [\"extra\"]\nSee 'trackctl version --help'.\n"},
	} {
		code, stdout, stderr := run(t, tc.args...)
		if code != ExitUsage || stderr != tc.want || stdout != "" {
			t.Errorf("%q:\nexit %d, stdout %q\nstderr %q\nwant exit 2 and stderr %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

// TestHelpGolden: every command's help, on stdout, equals its golden file;
// "help CMD" is "CMD --help". go test ./trackctl -run TestHelpGolden -update
// rewrites them.
func TestHelpGolden(t *testing.T) {
	for _, name := range []string{"", "render", "validate", "check", "diff", "status", "deploy", "promote", "set-weight", "rollback", "history", "approve", "pause", "resume", "abort", "follow", "board", "version", "completion"} {
		args := []string{"--help"}
		if name != "" {
			args = []string{name, "--help"}
		}
		code, stdout, stderr := run(t, args...)
		if code != ExitOK || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
		file := filepath.Join("../testdata/trackctl/help", "trackctl"+strings.TrimSuffix("-"+name, "-")+".txt")
		if *update {
			writeFile(t, file, stdout)
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (go test ./trackctl -run TestHelpGolden -update writes it)", err)
		}
		if diff := cmp.Diff(string(want), stdout); diff != "" {
			t.Errorf("%q (-golden +got):\n%s", args, diff)
		}
		if name != "" {
			if _, viaHelp, _ := run(t, "help", name); viaHelp != stdout {
				t.Errorf("help %s differs from %s --help", name, name)
			}
		}
	}
	if code, stdout, _ := run(t); code != ExitOK || !strings.Contains(stdout, "Available Commands:") {
		t.Errorf("no arguments: exit %d, want the help:\n%s", code, stdout)
	}
	if code, stdout, _ := run(t, "completion", "bash"); code != ExitOK || !strings.Contains(stdout, "__start_trackctl") {
		t.Errorf("completion bash: exit %d, %.200q", code, stdout)
	}
}

// TestKubectlPlugin: installed as kubectl-track, the help says "kubectl track".
func TestKubectlPlugin(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main(context.Background(), "kubectl track", []string{"rendr"}, nil, &out, &errOut)
	if code != ExitUsage || errOut.String() != "kubectl track: unknown command \"rendr\" for \"kubectl track\"\n\nDid you mean this?\n\trender\nSee 'kubectl track --help'.\n" {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = Main(context.Background(), "kubectl track", []string{"render", "--servce", "x"}, nil, &out, &errOut)
	if code != ExitUsage || !strings.HasPrefix(errOut.String(), "kubectl track render: unknown flag: --servce") || !strings.Contains(errOut.String(), "See 'kubectl track render --help'.") {
		t.Errorf("flag error: exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	code = Main(context.Background(), "kubectl track", []string{"status", "--help"}, nil, &out, &errOut)
	if code != ExitOK || !strings.Contains(out.String(), "kubectl track status [SERVICE...]") {
		t.Errorf("help: %q", out.String())
	}
	out.Reset()
	Main(context.Background(), "kubectl track", []string{"completion", "bash"}, nil, &out, &errOut)
	if strings.Contains(out.String(), "__start_kubectl ") || strings.Contains(out.String(), "complete -o default -F __start_kubectl kubectl\n") {
		t.Errorf("the plugin's completion would replace kubectl's own")
	}
}

// TestGitOpsTree: check on a repository as teams keep it (specs beside
// PodTemplates and kustomizations, a kustomization without apiVersion, a
// Helm chart with templates and values, a CI workflow, the same service in
// two namespaces) checks exactly the three specs and skips the rest, saying
// why with -v.
func TestGitOpsTree(t *testing.T) {
	haproxytest.Binary(t)
	const tree, golden = "../testdata/trackctl/gitops", "../testdata/trackctl/gitops.golden"
	code, stdout, stderr := run(t, "check", tree, "--golden", golden, "-v")
	want := `skipped ../testdata/trackctl/gitops/.github/workflows/ci.yml: no service spec
skipped ../testdata/trackctl/gitops/apps/account-service/kustomization.yaml: no service spec
skipped ../testdata/trackctl/gitops/apps/account-service/podtemplate.yaml: no service spec
skipped ../testdata/trackctl/gitops/charts/web/Chart.yaml: no service spec
skipped ../testdata/trackctl/gitops/charts/web/templates/: Helm chart templates (check what helm template renders instead)
skipped ../testdata/trackctl/gitops/charts/web/values.yaml: no service spec
skipped ../testdata/trackctl/gitops/overlays/staging/kustomization.yaml: no service spec
ok ../testdata/trackctl/gitops/apps/account-service/configmap.yaml (ConfigMap shop/account-service): service account-service matches ../testdata/trackctl/gitops.golden/apps/account-service/shop/account-service.cfg
ok ../testdata/trackctl/gitops/apps/web/service.yaml: service web matches ../testdata/trackctl/gitops.golden/apps/web/default/web.cfg
ok ../testdata/trackctl/gitops/overlays/staging/account-service.yaml (ConfigMap staging/account-service): service account-service matches ../testdata/trackctl/gitops.golden/overlays/staging/staging/account-service.cfg
`
	if code != ExitOK || stderr != "" {
		t.Errorf("check: exit %d, stderr %q", code, stderr)
	}
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("check -v (-want +got):\n%s", diff)
	}

	// -o json: the documented fields.
	code, stdout, _ = run(t, "check", tree, "--golden", golden, "-o", "json")
	var report Report
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || code != ExitOK {
		t.Fatalf("-o json: exit %d, %v:\n%s", code, err, stdout)
	}
	if !report.OK || len(report.Results) != 3 || len(report.Skipped) != 7 {
		t.Errorf("-o json: ok %v, %d results, %d skipped; want true, 3, 7", report.OK, len(report.Results), len(report.Skipped))
	}
	r := report.Results[0]
	wantFree := Backend{Name: "free", Servers: []Server{{"canary", 5, 5}, {"production", 95, 95}}}
	if r.Namespace != "shop" || r.Service != "account-service" || r.Status != "ok" || len(r.Backends) != 2 || !cmp.Equal(r.Backends[1], wantFree) {
		t.Errorf("-o json: first result %+v", r)
	}

	// An edit to one spec: exactly that one differs, with the diff.
	dir := t.TempDir()
	copyTree(t, tree, dir)
	cm := filepath.Join(dir, "overlays/staging/account-service.yaml")
	data, _ := os.ReadFile(cm)
	os.WriteFile(cm, bytes.Replace(data, []byte("{canary: 50, production: 50}"), []byte("{canary: 20, production: 80}"), 1), 0o644)
	code, stdout, _ = run(t, "check", dir, "--golden", golden, "-o", "yaml")
	if code != ExitProblem || !strings.Contains(stdout, "status: differs") || strings.Count(stdout, "status: ok") != 2 || !strings.Contains(stdout, "weight 20 ") {
		t.Errorf("an edited overlay: exit %d, -o yaml:\n%s", code, stdout)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		writeFile(t, filepath.Join(to, rel), string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExamplesPassCheck: the repository's own examples are specs that check
// and validate --strict accept (issue 10, item 3).
func TestExamplesPassCheck(t *testing.T) {
	haproxytest.Binary(t)
	golden := t.TempDir()
	if code, stdout, stderr := run(t, "check", "../examples", "--golden", golden, "--update"); code != ExitOK {
		t.Fatalf("check --update examples: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := run(t, "check", "../examples", "--golden", golden, "--strict"); code != ExitOK {
		t.Errorf("check --strict examples: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestValidateAgreesWithTheCluster: what the cluster or the sidecar would
// read otherwise is an error with file and line; a ConfigMap the controller
// ignores is a warning, an error with --strict (issue 10, item 4).
func TestValidateAgreesWithTheCluster(t *testing.T) {
	haproxytest.Binary(t)
	dir := t.TempDir()
	spec := "service: web\nport: 80\ntracks:\n  production: {version: v1}\ndefault: main\nbackends:\n  main: {production: 100}\n"
	indented := "    " + strings.ReplaceAll(strings.TrimSuffix(spec, "\n"), "\n", "\n    ") + "\n"
	cm := func(name, ns string, labelled bool) string {
		label := ""
		if labelled {
			label = "  labels: {trackrouter.dev/service: web}\n"
		}
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: " + ns + "\n" + label + "data:\n  service.yaml: |\n" + indented
	}
	for _, tc := range []struct {
		name, data string
		strict     bool
		code       int
		want       string
	}{
		{"service.yaml twice", cm("web", "shop", true) + "  service.yaml: |\n" + indented, false, ExitProblem,
			"F:16: data.service.yaml: duplicate key (first on line 8): Kubernetes would keep only one of them; remove one\n"},
		{"two bare specs", spec + "---\n" + strings.Replace(spec, "web", "api", 1), false, ExitProblem,
			"F:1: a bare service.yaml holds exactly one YAML document, this file has 2 (the sidecar refuses it): one file per service, or ConfigMaps with the key service.yaml\n" +
				"F:9: a bare service.yaml holds exactly one YAML document, this file has 2 (the sidecar refuses it): one file per service, or ConfigMaps with the key service.yaml\n"},
		{"one service twice", cm("web", "shop", true) + "---\n" + cm("web2", "shop", true), false, ExitProblem,
			"F:25: service: service web in namespace shop is also defined on line 9: their Deployments and Services would collide\n"},
		{"no label", cm("web", "shop", false), false, ExitOK,
			"ok F (ConfigMap shop/web): service web\n  shares: main: production 100.0%\nwarning: F:4: metadata: no label trackrouter.dev/service: web: track-controller ignores this ConfigMap (a sidecar given --configmap still reads it)\n"},
		{"no label, strict", cm("web", "shop", false), true, ExitProblem,
			"warnings F (ConfigMap shop/web): service web\n  shares: main: production 100.0%\nwarning: F:4: metadata: no label trackrouter.dev/service: web: track-controller ignores this ConfigMap (a sidecar given --configmap still reads it)\n"},
	} {
		file := writeFile(t, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml"), tc.data)
		args := []string{"validate", file}
		if tc.strict {
			args = append(args, "--strict")
		}
		code, stdout, stderr := run(t, args...)
		want := strings.ReplaceAll(tc.want, "F", file)
		if code != tc.code || stdout != want || stderr != "" {
			t.Errorf("%s: exit %d, stdout:\n%s\nstderr %q\nwant exit %d and:\n%s", tc.name, code, stdout, stderr, tc.code, want)
		}
	}
}

// TestDiffJSON: diff -o json has the spec changes, weights with shares and
// the config diff, and the same exit code.
func TestDiffJSON(t *testing.T) {
	newer := writeFile(t, filepath.Join(t.TempDir(), "new.yaml"), strings.Replace(strings.Replace(readExample(t),
		"{canary: 5, production: 95}", "{canary: 10, production: 90}", 1), "canary:     {version: 1.0,", "canary:     {version: 1.0.0,", 1))
	code, stdout, _ := run(t, "diff", example, newer, "-o", "json")
	var report DiffReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || code != ExitProblem {
		t.Fatalf("exit %d, %v:\n%s", code, err, stdout)
	}
	if len(report.Services) != 1 {
		t.Fatalf("services: %+v", report.Services)
	}
	d := report.Services[0]
	if !report.Changed || d.Status != "changed" || len(d.Spec) != 1 || d.Spec[0].Field != "tracks.canary.version" || d.Spec[0].New != "1.0.0" {
		t.Errorf("spec changes: %+v", d)
	}
	if len(d.Weights) != 1 || d.Weights[0].Servers[0].New.Share != 10 || d.Weights[0].Servers[1].Old.Weight != 95 || !strings.Contains(d.Config, "+  server canary") {
		t.Errorf("weights: %+v", d.Weights)
	}
}
