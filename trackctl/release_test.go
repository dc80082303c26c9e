package trackctl

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

// TestReleaseOnFiles: each command edits a manifest with comments, flow
// and block styles and quoted values in place; the result equals its golden
// file, and only the lines holding the changed values differ (go test
// ./internal/trackctl -run TestReleaseOnFiles -update rewrites the golden
// files). An invalid or impossible request leaves the file byte for byte.
func TestReleaseOnFiles(t *testing.T) {
	haproxytest.Binary(t)
	const dir = "../testdata/trackctl/release"
	before, err := os.ReadFile(filepath.Join(dir, "manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		lines int // lines that differ
	}{
		{"deploy", []string{"deploy", "account-service", "1.3.0"}, 1},
		{"promote", []string{"promote", "account-service", "1.2.0"}, 1},        // internal runs it: to canary
		{"promote-quoted", []string{"promote", "account-service", "1.1.0"}, 1}, // canary runs it: to paid, quotes kept
		{"promote-to", []string{"promote", "account-service", "1.2.0", "--to", "production"}, 1},
		{"set-weight-flow", []string{"set-weight", "account-service", "canary", "canary=10", "production=90"}, 1},
		{"set-weight-block", []string{"set-weight", "account-service", "paid", "paid=20", "production=80"}, 2},
		{"rollback", []string{"rollback", "account-service", "canary"}, 1},
		{"rollback-version", []string{"rollback", "account-service", "canary", "--version", "1.0.0"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, filepath.Join(t.TempDir(), "manifest.yaml"), string(before))
			code, stdout, stderr := run(t, append(tc.args, "-f", file)...)
			if code != ExitOK {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			after, _ := os.ReadFile(file)
			golden := filepath.Join(dir, tc.name+".after.yaml")
			if *update {
				writeFile(t, golden, string(after))
			} else if want, err := os.ReadFile(golden); err != nil || !bytes.Equal(want, after) {
				t.Errorf("%v; (-golden +got):\n%s", err, cmp.Diff(string(want), string(after)))
			}
			a, b := strings.Split(string(before), "\n"), strings.Split(string(after), "\n")
			if len(a) != len(b) {
				t.Fatalf("line count %d -> %d", len(a), len(b))
			}
			diff := 0
			for i := range a {
				if a[i] != b[i] {
					diff++
				}
			}
			if diff != tc.lines {
				t.Errorf("%d lines changed, want %d", diff, tc.lines)
			}
			// --dry-run prints the same change and writes nothing.
			file2 := writeFile(t, filepath.Join(t.TempDir(), "manifest.yaml"), string(before))
			if code, out, _ := run(t, append(tc.args, "-f", file2, "--dry-run")...); code != ExitOK || !strings.Contains(out, "dry run: "+file2+" not changed") {
				t.Errorf("--dry-run: exit %d\n%s", code, out)
			}
			if got, _ := os.ReadFile(file2); !bytes.Equal(got, before) {
				t.Errorf("--dry-run changed the file")
			}
		})
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"invalid weight", []string{"set-weight", "account-service", "canary", "canary=300"}, ExitProblem,
			"manifest.yaml:29: backends.canary.canary: weight 300 is out of range 0-256\naccount-service: the change \"set-weight canary canary=300\" makes the spec invalid; nothing changed\n"},
		{"invalid version", []string{"deploy", "account-service", "Bad_Version"}, ExitUsage, "version \"Bad_Version\": lowercase letters, digits"},
		{"a version that carries YAML", []string{"promote", "account-service", "2.0, address: evil.example.com:80", "--to", "canary"}, ExitUsage, "version \"2.0, address: evil.example.com:80\""},
		{"a version with a comment", []string{"deploy", "account-service", "1.0.0 # x"}, ExitUsage, "version \"1.0.0 # x\""},
		{"unknown backend", []string{"set-weight", "account-service", "beta", "canary=1"}, ExitProblem,
			"account-service: service account-service has no backend beta (backends: canary, internal, paid); nothing changed\n"},
		{"track not in backend", []string{"set-weight", "account-service", "canary", "paid=1"}, ExitProblem,
			"backend canary has no server for track paid (it has: canary, production): add it to the spec first"},
		{"promote what runs nowhere", []string{"promote", "account-service", "9.9.9"}, ExitProblem,
			"version 9.9.9 runs on no track of account-service (internal 1.2.0, canary 1.1.0, paid 1.0.0, production 1.0.0): deploy it first"},
		{"promote past the last stage", []string{"promote", "account-service", "1.0.0"}, ExitProblem,
			"version 1.0.0 already runs on the last stage, production"},
		{"rollback the only live track", []string{"rollback", "account-service", "internal"}, ExitProblem,
			"backend internal would have no track with a weight above 0 without internal"},
		{"bad TRACK=W", []string{"set-weight", "account-service", "canary", "canary:10"}, ExitUsage, "\"canary:10\": want TRACK=WEIGHT, e.g. canary=10"},
		{"unknown service", []string{"deploy", "nope", "1.0.0"}, ExitUsage, "has no service \"nope\" (it has: account-service, web)"},
		{"-f with --context", []string{"deploy", "account-service", "1.0.0", "--context", "prod"}, ExitUsage, "-f edits a file: --kubeconfig and --context are for the cluster"},
		{"-f with -n of no such namespace", []string{"deploy", "account-service", "1.0.0", "-n", "staging"}, ExitUsage, "has no service \"account-service\" in namespace staging"},
	} {
		file := writeFile(t, filepath.Join(t.TempDir(), "manifest.yaml"), string(before))
		code, stdout, stderr := run(t, append(tc.args, "-f", file)...)
		if out := stdout + stderr; code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want %d with %q:\n%s", tc.name, code, tc.code, tc.want, out)
		}
		if got, _ := os.ReadFile(file); !bytes.Equal(got, before) {
			t.Errorf("%s: the file changed", tc.name)
		}
	}
	// The same value again: no change, nothing written.
	file := writeFile(t, filepath.Join(t.TempDir(), "manifest.yaml"), string(before))
	if code, out, _ := run(t, "set-weight", "account-service", "canary", "canary=5", "-f", file); code != ExitOK || !strings.Contains(out, "no change") {
		t.Errorf("same weight: exit %d\n%s", code, out)
	}
}

// TestHistoryOfAFile: in a git repository, history -f lists the commits
// that changed the manifest, newest first, with what each changed in the
// service's spec.
func TestHistoryOfAFile(t *testing.T) {
	haproxytest.Binary(t)
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=Dana", "-c", "user.email=dana@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	before, _ := os.ReadFile("../testdata/trackctl/release/manifest.yaml")
	file := writeFile(t, filepath.Join(dir, "apps", "account.yaml"), string(before))
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "account-service")
	if code, out, _ := run(t, "deploy", "account-service", "1.3.0", "-f", file); code != ExitOK {
		t.Fatalf("deploy: %s", out)
	}
	git("commit", "-q", "-am", "deploy 1.3.0")
	if code, out, _ := run(t, "set-weight", "account-service", "canary", "canary=20", "production=80", "-f", file); code != ExitOK {
		t.Fatalf("set-weight: %s", out)
	}
	git("commit", "-q", "-am", "canary to 20%")
	code, out, stderr := run(t, "history", "account-service", "-f", file, "-o", "json")
	var h []HistoryEntry
	if err := json.Unmarshal([]byte(out), &h); err != nil || code != ExitOK || len(h) != 3 {
		t.Fatalf("history: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	want := [][]string{
		{"backends.canary: canary 5 (5.0%)->20 (20.0%), production 95 (95.0%)->80 (80.0%)"},
		{"tracks.internal.version 1.2.0->1.3.0"},
		{"(first version)"},
	}
	for i, e := range h {
		if e.User != "Dana <dana@example.com>" || e.Commit == "" || !cmp.Equal(e.Changes, want[i]) {
			t.Errorf("entry %d: %+v, want changes %q", i, e, want[i])
		}
	}
	if h[0].Command != "canary to 20%" {
		t.Errorf("newest first: %+v", h[0])
	}
	outside := writeFile(t, filepath.Join(t.TempDir(), "x.yaml"), string(before))
	if code, _, stderr := run(t, "history", "account-service", "-f", outside); code == ExitOK || !strings.Contains(stderr, "git log") {
		t.Errorf("a file outside git: exit %d, %q", code, stderr)
	}
	if code, _, stderr := run(t, "history", "nosuch", "-f", file); code != ExitUsage || !strings.Contains(stderr, "has no service \"nosuch\"") {
		t.Errorf("an unknown service: exit %d, %q", code, stderr)
	}
}

// TestReleaseFileSafety: what a reviewer found attacking -f.
func TestReleaseFileSafety(t *testing.T) {
	haproxytest.Binary(t)
	before, _ := os.ReadFile("../testdata/trackctl/release/manifest.yaml")
	fresh := func() string { return writeFile(t, filepath.Join(t.TempDir(), "m.yaml"), string(before)) }

	// A change made by someone else between the read and the write.
	file := fresh()
	var out bytes.Buffer
	e := &env{name: "trackctl", stdout: &out, stderr: &out, beforeWrite: func() {
		os.WriteFile(file, bytes.Replace(before, []byte("paid: 5"), []byte("paid: 7"), 1), 0o644)
	}}
	root := e.rootCommand()
	root.SetArgs([]string{"set-weight", "account-service", "canary", "canary=10", "production=90", "-f", file})
	root.SetOut(&out)
	root.SetErr(&out)
	if _, err := root.ExecuteC(); err != errProblems || !strings.Contains(out.String(), "conflict: "+file+" changed since it was read; nothing was written") {
		t.Errorf("a concurrent edit: %v\n%s", err, out.String())
	}
	if got, _ := os.ReadFile(file); !bytes.Contains(got, []byte("paid: 7")) || !bytes.Contains(got, []byte("{canary: 5, production: 95}")) {
		t.Errorf("the other edit was lost or ours written:\n%s", got)
	}

	// Read-only files and FIFOs are refused.
	file = fresh()
	os.Chmod(file, 0o444)
	if code, _, stderr := run(t, "deploy", "account-service", "1.3.0", "-f", file); code == ExitOK || !strings.Contains(stderr, "read-only") {
		t.Errorf("a read-only file: exit %d, %q", code, stderr)
	}
	fifo := filepath.Join(t.TempDir(), "fifo.yaml")
	syscall.Mkfifo(fifo, 0o644)
	if code, _, stderr := run(t, "deploy", "account-service", "1.3.0", "-f", fifo); code == ExitOK || !strings.Contains(stderr, "not a regular file") {
		t.Errorf("a FIFO: exit %d, %q", code, stderr)
	}

	// Values other YAML readers would misread are quoted; weights are
	// written as numbers.
	file = fresh()
	if code, out, _ := run(t, "deploy", "account-service", "1.10", "-f", file); code != ExitOK {
		t.Fatalf("deploy 1.10: %s", out)
	}
	if got, _ := os.ReadFile(file); !bytes.Contains(got, []byte(`version: "1.10"`)) {
		t.Errorf("1.10 not quoted:\n%s", got)
	}
	if code, out, _ := run(t, "set-weight", "account-service", "canary", "canary=010", "production=+90", "-f", file); code != ExitOK {
		t.Fatalf("set-weight 010: %s", out)
	}
	if got, _ := os.ReadFile(file); !bytes.Contains(got, []byte("{canary: 10, production: 90}")) {
		t.Errorf("weights not canonical:\n%s", got)
	}

	// One service in two namespaces of a file: -n picks.
	two := strings.Replace(string(before), "name: web\n  namespace: shop", "name: account-service\n  namespace: staging", 1)
	two = strings.Replace(two, "trackrouter.dev/service: web}", "trackrouter.dev/service: account-service}", 1)
	two = strings.Replace(two, "service: web\n", "service: account-service\n", 1)
	file = writeFile(t, filepath.Join(t.TempDir(), "two.yaml"), two)
	if code, _, stderr := run(t, "deploy", "account-service", "1.3.0", "-f", file); code != ExitUsage || !strings.Contains(stderr, "in several namespaces (shop, staging): pick one with -n") {
		t.Errorf("ambiguous: exit %d, %q", code, stderr)
	}
	if code, out, _ := run(t, "deploy", "account-service", "1.3.0", "-f", file, "-n", "staging"); code != ExitOK || !strings.Contains(out, "tracks.production.version 1.0.0->1.3.0") {
		t.Errorf("-n staging: exit %d\n%s", code, out)
	}

	// A bare spec with a trailing document separator.
	bare := writeFile(t, filepath.Join(t.TempDir(), "service.yaml"), "service: web\nport: 80\ntracks:\n  production: {version: \"1\"}\ndefault: main\nbackends:\n  main: {production: 100}\n---\n")
	if code, out, stderr := run(t, "deploy", "web", "2.0.0", "-f", bare); code != ExitOK {
		t.Errorf("a trailing ---: exit %d\n%s%s", code, out, stderr)
	}
}

// TestHistoryAcrossARename: commits made before the file was renamed are
// read under the name they had.
func TestHistoryAcrossARename(t *testing.T) {
	haproxytest.Binary(t)
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=Dana", "-c", "user.email=dana@example.com"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	before, _ := os.ReadFile("../testdata/trackctl/release/manifest.yaml")
	file := writeFile(t, filepath.Join(dir, "m.yaml"), string(before))
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "first")
	run(t, "deploy", "account-service", "1.3.0", "-f", file)
	git("commit", "-q", "-am", "deploy")
	git("mv", "m.yaml", "shop.yaml")
	git("commit", "-q", "-m", "rename")
	code, out, stderr := run(t, "history", "account-service", "-f", filepath.Join(dir, "shop.yaml"), "-o", "json")
	var h []HistoryEntry
	if err := json.Unmarshal([]byte(out), &h); err != nil || code != ExitOK || len(h) != 3 {
		t.Fatalf("exit %d, %v\n%s%s", code, err, out, stderr)
	}
	want := [][]string{{"(no change of the spec)"}, {"tracks.internal.version 1.2.0->1.3.0"}, {"(first version)"}}
	for i := range h {
		if !cmp.Equal(h[i].Changes, want[i]) {
			t.Errorf("entry %d (%s): %q, want %q", i, h[i].Command, h[i].Changes, want[i])
		}
	}
}

// TestRefusalJSON: -o json has a result for a refused change too.
func TestRefusalJSON(t *testing.T) {
	haproxytest.Binary(t)
	before, _ := os.ReadFile("../testdata/trackctl/release/manifest.yaml")
	file := writeFile(t, filepath.Join(t.TempDir(), "m.yaml"), string(before))
	code, out, _ := run(t, "set-weight", "account-service", "canary", "canary=300", "-f", file, "-o", "json")
	var r ChangeResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != ExitProblem || r.Written || !strings.Contains(r.Refused, "weight 300 is out of range") {
		t.Errorf("exit %d, %v: %+v\n%s", code, err, r, out)
	}
}

// TestFileReasonInHistory: the --reason of a release command on a file
// reaches history -f when the file is committed with the git command the
// release command suggests (its "Reason:" trailer).
func TestFileReasonInHistory(t *testing.T) {
	haproxytest.Binary(t)
	dir := t.TempDir()
	env := append(os.Environ(), "GIT_AUTHOR_NAME=Dana", "GIT_AUTHOR_EMAIL=dana@example.com", "GIT_COMMITTER_NAME=Dana", "GIT_COMMITTER_EMAIL=dana@example.com")
	sh := func(script string) {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	before, _ := os.ReadFile("../testdata/trackctl/release/manifest.yaml")
	file := writeFile(t, filepath.Join(dir, "account.yaml"), string(before))
	sh("git init -q && git add . && git commit -q -m first")
	reason := "canary's errors are gone; ticket #42"
	code, out, stderr := run(t, "set-weight", "account-service", "canary", "canary=20", "production=80", "-f", file, "--reason", reason)
	if code != ExitOK {
		t.Fatalf("set-weight: exit %d\n%s%s", code, out, stderr)
	}
	_, suggested, ok := strings.Cut(out, "commit it with the reason that 'trackctl history -f' shows:\n")
	if !ok {
		t.Fatalf("no git command suggested:\n%s", out)
	}
	// Run from elsewhere: the command names the repository itself.
	elsewhere := exec.Command("sh", "-c", strings.TrimSpace(suggested))
	elsewhere.Dir, elsewhere.Env = t.TempDir(), env
	if out, err := elsewhere.CombinedOutput(); err != nil {
		t.Fatalf("the suggested command, run from another directory: %v\n%s", err, out)
	}
	if code, _, stderr := run(t, "set-weight", "account-service", "canary", "canary=30", "production=70", "-f", file, "--reason", "a\x1b[2Jb"); code != ExitUsage || !strings.Contains(stderr, "--reason: control characters") {
		t.Errorf("a reason with a terminal escape: exit %d, %q", code, stderr)
	}
	code, out, stderr = run(t, "history", "account-service", "-f", file, "-o", "json")
	var h []HistoryEntry
	if err := json.Unmarshal([]byte(out), &h); err != nil || code != ExitOK || len(h) != 2 {
		t.Fatalf("history: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	if h[0].Reason != reason || h[0].Command != "trackctl set-weight account-service canary canary=20 production=80" || h[1].Reason != "" {
		t.Errorf("history: want the reason %q on the newest entry and its command, got %+v", reason, h)
	}
}

// TestUsageExitCodes: a file that is not there, or is a directory, is a
// usage error (exit 2), as a misspelt service is, for every command that
// reads one.
func TestUsageExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"validate", dir}, "is a directory, not a spec file"},
		{[]string{"validate", filepath.Join(dir, "nope.yaml")}, "nope.yaml: no such file"},
		{[]string{"deploy", "account-service", "1.0.0", "-f", filepath.Join(dir, "nope.yaml")}, "nope.yaml: no such file"},
		{[]string{"render", dir}, "is a directory"},
		{[]string{"deploy", "account-service", "1.0.0", "-f", writeFile(t, filepath.Join(dir, "kustomization.yaml"), "resources: [account-service.yaml]\n")}, "kustomization.yaml is not a spec"},
	} {
		code, stdout, stderr := run(t, tc.args...)
		if out := stdout + stderr; code != ExitUsage || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, code, ExitUsage, tc.want, out)
		}
	}
}
