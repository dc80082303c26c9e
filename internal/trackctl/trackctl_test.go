package trackctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trackrouter/trackrouter/internal/haproxytest"
)

const example = "../../examples/account-service/account-service.yaml"

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, path, data string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRender(t *testing.T) {
	code, out, errOut := run(t, "render", example, "--bind", "127.0.0.1:18080")
	if code != ExitOK || !strings.Contains(out, "frontend account-service") || !strings.Contains(out, "bind 127.0.0.1:18080") {
		t.Fatalf("render: code %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	path := filepath.Join(t.TempDir(), "out.cfg")
	if code, _, errOut := run(t, "render", example, "--output-file", path); code != ExitOK {
		t.Fatalf("render --output-file: code %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(path); err != nil || !strings.Contains(string(b), "backend enterprise") {
		t.Errorf("render --output-file wrote %q, %v", b, err)
	}

	bad := writeFile(t, filepath.Join(t.TempDir(), "bad.yaml"), strings.Replace(readExample(t), "{canary: 5,", "{canary: 300,", 1))
	code, out, errOut = run(t, "render", bad)
	if code != ExitProblem || out != "" || !strings.Contains(errOut, "backends.canary.canary: weight 300 is out of range 0-256") {
		t.Errorf("render of a bad spec: want exit 1, no output, the error; got %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := run(t, "render"); code != ExitUsage || !strings.Contains(errOut, "want exactly one FILE, got 0 argument(s)") {
		t.Errorf("render without FILE: got %d %q", code, errOut)
	}
}

func TestValidate(t *testing.T) {
	haproxytest.Binary(t)
	dir := t.TempDir()
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), strings.Replace(readExample(t), "FREE: canary", "FREE: canry", 1))
	code, out, _ := run(t, "validate", example)
	if code != ExitOK || !strings.HasPrefix(out, "ok ") {
		t.Errorf("validate example: code %d, %q", code, out)
	}
	code, out, _ = run(t, "validate", example, bad)
	if code != ExitProblem || !strings.Contains(out, "bad.yaml:28: groups.FREE: backend \"canry\" is not defined") {
		t.Errorf("validate bad: code %d, output:\n%s", code, out)
	}
	// haproxy -c problems are reported too: a base config haproxy refuses.
	base := writeFile(t, filepath.Join(dir, "base.cfg"), "defaults\n  mode http\n  timeout nonsense 1s\n")
	code, out, _ = run(t, "validate", "--base", base, example)
	if code != ExitProblem || !strings.Contains(out, "haproxy -c refused the config") {
		t.Errorf("validate with a bad base: code %d, output:\n%s", code, out)
	}
}

func TestCheck(t *testing.T) {
	haproxytest.Binary(t)
	dir := t.TempDir()
	manifests := filepath.Join(dir, "manifests")
	golden := filepath.Join(dir, "golden")
	writeFile(t, filepath.Join(manifests, "account.yaml"), readExample(t))
	writeFile(t, filepath.Join(manifests, "other", "deploy.yaml"), "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")

	if code, out, _ := run(t, "check", manifests, "--golden", golden); code != ExitProblem || !strings.Contains(out, "no golden file") {
		t.Errorf("check without golden files: code %d, output:\n%s", code, out)
	}
	if code, out, _ := run(t, "check", manifests, "--golden", golden, "--update"); code != ExitOK || !strings.Contains(out, "updated") {
		t.Fatalf("check --update: code %d, output:\n%s", code, out)
	}
	if code, out, _ := run(t, "check", manifests, "--golden", golden); code != ExitOK {
		t.Errorf("check after update: code %d, output:\n%s", code, out)
	}
	// A weight edit shows as a diff against the golden file.
	writeFile(t, filepath.Join(manifests, "account.yaml"), strings.Replace(readExample(t), "{canary: 5, production: 95}", "{canary: 10, production: 90}", 1))
	code, out, _ := run(t, "check", manifests, "--golden", golden)
	if code != ExitProblem || !strings.Contains(out, "-  server canary account-service-canary.default.svc.cluster.local:8080 weight 5 ") ||
		!strings.Contains(out, "+  server canary account-service-canary.default.svc.cluster.local:8080 weight 10 ") {
		t.Errorf("check after an edit: code %d, output:\n%s", code, out)
	}
	// A golden file whose service is gone is reported, and deleted by --update.
	writeFile(t, filepath.Join(golden, "gone.cfg"), "x")
	if code, out, _ := run(t, "check", manifests, "--golden", golden, "--update"); code != ExitOK || !strings.Contains(out, "deleted") {
		t.Errorf("check --update with a stale file: code %d, output:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(golden, "gone.cfg")); !os.IsNotExist(err) {
		t.Errorf("stale golden file not deleted: %v", err)
	}
	// An invalid spec fails the check and leaves its golden file alone.
	writeFile(t, filepath.Join(manifests, "account.yaml"), strings.Replace(readExample(t), "port: 8080", "port: 0", 1))
	before, _ := os.ReadFile(filepath.Join(golden, "default", "account-service.cfg"))
	code, out, _ = run(t, "check", manifests, "--golden", golden, "--update")
	after, _ := os.ReadFile(filepath.Join(golden, "default", "account-service.cfg"))
	if code != ExitProblem || !strings.Contains(out, "port: port 0 is out of range") || !bytes.Equal(before, after) {
		t.Errorf("check of an invalid spec: code %d, golden changed %v, output:\n%s", code, !bytes.Equal(before, after), out)
	}
}

func TestDiff(t *testing.T) {
	dir := t.TempDir()
	newer := writeFile(t, filepath.Join(dir, "new.yaml"), strings.Replace(readExample(t), "{canary: 5, production: 95}", "{canary: 10, production: 90}", 1))
	code, out, errOut := run(t, "diff", example, newer)
	if code != ExitProblem {
		t.Fatalf("diff: code %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"-  server canary account-service-canary.default.svc.cluster.local:8080 weight 5 ",
		"+  server canary account-service-canary.default.svc.cluster.local:8080 weight 10 ",
		"  canary: canary 5 (5.0%)->10 (10.0%), production 95 (95.0%)->90 (90.0%)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ := run(t, "diff", example, example); code != ExitOK || !strings.Contains(out, "no change") {
		t.Errorf("diff of a file with itself: code %d, %q", code, out)
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := run(t, "--help")
	if code != ExitOK || !strings.Contains(out, "render") || !strings.Contains(out, "check") {
		t.Errorf("--help: code %d, %q", code, out)
	}
	code, helpOut, _ := run(t, "render", "--help")
	if code != ExitOK || !strings.Contains(helpOut, "--base") {
		t.Errorf("render --help: code %d, %q", code, helpOut)
	}
	if code, _, errOut := run(t, "frobnicate"); code != ExitUsage || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: code %d, %q", code, errOut)
	}
}

// TestDiffSpecChangesAndExitCodes: a version bump is a difference (exit 1),
// though haproxy.cfg does not change; an invalid NEW is an error (exit 2).
func TestDiffSpecChangesAndExitCodes(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	bumped := filepath.Join(dir, "bumped.yaml")
	os.WriteFile(bumped, bytes.Replace(data, []byte("canary:     {version: 1.0, replicas: 4}"), []byte("canary:     {version: 1.0.0, replicas: auto}"), 1), 0o644)
	code, stdout, _ := run(t, "diff", example, bumped)
	want := "spec of service account-service:\n  tracks.canary.version 1.0->1.0.0\n  tracks.canary.replicas 4->auto\n"
	if code != ExitProblem || stdout != want {
		t.Errorf("version bump: exit %d, stdout %q; want 1 and %q", code, stdout, want)
	}
	invalid := filepath.Join(dir, "invalid.yaml")
	os.WriteFile(invalid, bytes.Replace(data, []byte("{canary: 5,"), []byte("{canary: 500,"), 1), 0o644)
	if code, _, stderr := run(t, "diff", example, invalid); code != ExitUsage || !strings.Contains(stderr, "out of range") {
		t.Errorf("invalid NEW: exit %d, stderr %q; want 2 and the problem", code, stderr)
	}
}

// TestCheckSkipsWhatIsNotASpec: check on a GitOps tree with Helm values, a
// CI workflow and a kustomization without apiVersion checks only the specs;
// a ConfigMap labelled for the controller without a service.yaml key is an
// error, not skipped.
func TestCheckSkipsWhatIsNotASpec(t *testing.T) {
	dir := t.TempDir()
	spec, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"app/values.yaml":            "replicaCount: 2\nimage:\n  tag: v1\n",
		".github/workflows/ci.yml":   "on: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n",
		"overlay/kustomization.yaml": "resources:\n  - ../app\n",
		"app/account-service.yaml":   string(spec),
	}
	for name, data := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	golden := filepath.Join(t.TempDir(), "golden")
	if code, _, stderr := run(t, "check", dir, "--golden", golden, "--update"); code != ExitOK {
		t.Fatalf("check --update on a GitOps tree: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := run(t, "check", dir, "--golden", golden); code != ExitOK {
		t.Errorf("check on a GitOps tree: exit %d\n%s", code, stderr)
	}
	os.WriteFile(filepath.Join(dir, "app/misnamed.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  labels: {trackrouter.dev/service: web}\ndata:\n  service.yml: |\n    service: web\n"), 0o644)
	code, stdout, stderr := run(t, "check", dir, "--golden", golden)
	if out := stdout + stderr; code != ExitProblem || !strings.Contains(out, "misnamed.yaml:5: data.service.yaml: this ConfigMap is labelled trackrouter.dev/service=web but has no key service.yaml (keys: service.yml)") {
		t.Errorf("a labelled ConfigMap without service.yaml: exit %d\n%s", code, out)
	}
}

// TestStdin: "-" reads the spec from standard input.
func TestStdin(t *testing.T) {
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := RunIO(context.Background(), []string{"render", "-"}, bytes.NewReader(data), &out, &errOut)
	if code != ExitOK || !strings.Contains(out.String(), "frontend account-service") {
		t.Errorf("render -: exit %d, stdout %.80q, stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = RunIO(context.Background(), []string{"validate", "-"}, strings.NewReader("service: a\nport: 0\n"), &out, &errOut)
	if code != ExitProblem || !strings.Contains(out.String()+errOut.String(), "<stdin>:2: port:") {
		t.Errorf("validate - with a bad spec: exit %d, %q %q", code, out.String(), errOut.String())
	}
}
