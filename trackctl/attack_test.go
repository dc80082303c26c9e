package trackctl

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
)

// TestCheckUnderAttack: what a reviewer found by attacking check and
// validate with untrusted pull requests (each once a real problem).
func TestCheckUnderAttack(t *testing.T) {
	haproxytest.Binary(t)
	spec := "service: web\nport: 80\ntracks: {production: {version: \"1\"}}\ndefault: main\nbackends: {main: {production: 100}}\n"
	cm := func(ns string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: " + ns + "\n  labels: {trackrouter.dev/service: web}\ndata:\n  service.yaml: |\n    " +
			strings.ReplaceAll(strings.TrimSuffix(spec, "\n"), "\n", "\n    ") + "\n"
	}

	t.Run("a namespace that injects config lines", func(t *testing.T) {
		dir := t.TempDir()
		pwned := filepath.Join(dir, "PWNED")
		writeFile(t, filepath.Join(dir, "pwn.lua"), `local f=io.open("`+pwned+`","w") f:write("ran") f:close()`)
		file := writeFile(t, filepath.Join(dir, "m", "web.yaml"), cm(`"default.svc.cluster.local:80 init-addr none\nglobal\n  lua-load `+filepath.Join(dir, "pwn.lua")+`\nbackend zz\n  #"`))
		code, out, _ := run(t, "validate", file)
		if code != ExitProblem || !strings.Contains(out, "web.yaml:5: metadata.namespace:") {
			t.Errorf("validate: exit %d\n%s", code, out)
		}
		run(t, "check", filepath.Join(dir, "m"), "--golden", filepath.Join(dir, "g"), "--update")
		if _, err := os.Stat(pwned); err == nil {
			t.Fatal("haproxy -c ran the manifest's Lua")
		}
		if code, _, stderr := run(t, "render", filepath.Join("../examples/account-service/account-service.yaml"), "-n", "bad ns"); code == ExitOK || !strings.Contains(stderr, "not a DNS-1123 label") {
			t.Errorf("render -n 'bad ns': exit %d, %q", code, stderr)
		}
	})

	t.Run("golden files through symbolic links", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "m", "web.yaml"), spec)
		secret := writeFile(t, filepath.Join(dir, "secret.txt"), "s3cr3t\n")
		os.MkdirAll(filepath.Join(dir, "g", "default"), 0o755)
		os.Symlink(secret, filepath.Join(dir, "g", "default", "web.cfg"))
		code, out, stderr := run(t, "check", filepath.Join(dir, "m"), "--golden", filepath.Join(dir, "g"))
		if code == ExitOK || strings.Contains(out+stderr, "s3cr3t") || !strings.Contains(stderr, "symbolic link") {
			t.Errorf("a symlinked golden file: exit %d\n%s%s", code, out, stderr)
		}
		run(t, "check", filepath.Join(dir, "m"), "--golden", filepath.Join(dir, "g"), "--update")
		if b, _ := os.ReadFile(secret); string(b) != "s3cr3t\n" {
			t.Errorf("--update wrote through the link: %q", b)
		}
	})

	t.Run("files that block or never end", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "m", "web.yaml"), spec)
		if err := syscall.Mkfifo(filepath.Join(dir, "m", "pipe.yaml"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Symlink("/dev/zero", filepath.Join(dir, "m", "zero.yaml"))
		done := make(chan string, 1)
		go func() {
			_, out, _ := run(t, "check", filepath.Join(dir, "m"), "--golden", filepath.Join(dir, "g"), "--update", "-v")
			done <- out
		}()
		select {
		case out := <-done:
			if !strings.Contains(out, "pipe.yaml: not a regular file") || !strings.Contains(out, "zero.yaml: not a regular file") {
				t.Errorf("check -v:\n%s", out)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("check hangs on a FIFO or /dev/zero")
		}
	})

	t.Run("a broken spec with {{ is not skipped", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "m", "web.yaml"), spec)
		if code, out, _ := run(t, "check", filepath.Join(dir, "m"), "--golden", filepath.Join(dir, "g"), "--update"); code != ExitOK {
			t.Fatalf("%s", out)
		}
		writeFile(t, filepath.Join(dir, "m", "web.yaml"), "# {{ .Values.x }}\n"+strings.Replace(spec, "port: 80", "port: 80\n\tbad: 1", 1))
		code, out, _ := run(t, "check", filepath.Join(dir, "m"), "--golden", filepath.Join(dir, "g"), "--update")
		if code != ExitProblem || !strings.Contains(out, "looks like a template") || strings.Contains(out, "deleted /") {
			t.Errorf("exit %d\n%s", code, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "g", "default", "web.cfg")); err != nil {
			t.Errorf("its golden file is gone: %v", err)
		}
	})

	t.Run("YAML of other tools is skipped", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "m", "web.yaml"), spec)
		files := map[string]string{
			".gitlab-ci.yml":      "x: &a {b: 1}\ny: *a\n",
			"values.yaml":         "replicas: 1\nreplicas: 2\n",
			"patch.yaml":          "- op: replace\n  path: /spec/replicas\n  value: 3\n",
			"serverless.yml":      "service: my-api\nprovider: {name: aws}\n",
			"docker-compose.yaml": "x-common: &common {restart: always}\nservices:\n  web: {<<: *common}\n",
		}
		for name, data := range files {
			writeFile(t, filepath.Join(dir, "m", name), data)
		}
		code, out, stderr := run(t, "check", filepath.Join(dir, "m"), "--golden", filepath.Join(dir, "g"), "--update", "-v")
		if code != ExitOK || strings.Count(out, ": no service spec") != len(files) {
			t.Errorf("exit %d\n%s%s", code, out, stderr)
		}
	})

	t.Run("one ConfigMap in two files of a directory", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "m", "one.yaml"), cm("shop"))
		writeFile(t, filepath.Join(dir, "m", "two.yaml"), strings.ReplaceAll(cm("shop"), "web", "api"))
		two := strings.Replace(strings.ReplaceAll(cm("shop"), "service: web", "service: api"), "trackrouter.dev/service: web", "trackrouter.dev/service: api", 1)
		writeFile(t, filepath.Join(dir, "m", "two.yaml"), two)
		code, out, _ := run(t, "check", filepath.Join(dir, "m"), "--golden", filepath.Join(dir, "g"), "--update")
		if code != ExitProblem || !strings.Contains(out, "ConfigMap shop/web is also defined in") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})

	t.Run("golden is the checked directory", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "web.yaml"), spec)
		for _, g := range []string{dir, filepath.Dir(dir)} {
			if code, _, stderr := run(t, "check", dir, "--golden", g, "--update"); code != ExitUsage || !strings.Contains(stderr, "give the golden files a directory of their own") {
				t.Errorf("--golden %s: exit %d, %q", g, code, stderr)
			}
		}
	})
}

// TestDiffEdges: a file added (/dev/null before), the controller's label
// removed, and a render that fails are said, with kubectl diff's codes.
func TestDiffEdges(t *testing.T) {
	if code, out, _ := run(t, "diff", os.DevNull, example); code != ExitProblem || !strings.Contains(out, "service account-service: only in "+example) {
		t.Errorf("diff /dev/null NEW: exit %d\n%s", code, out)
	}
	data, _ := os.ReadFile(example)
	unlabelled := writeFile(t, filepath.Join(t.TempDir(), "a.yaml"), strings.Replace(string(data), "    trackrouter.dev/service: account-service\n", "", 1))
	if code, out, _ := run(t, "diff", example, unlabelled); code != ExitProblem || !strings.Contains(out, "label trackrouter.dev/service account-service->none") {
		t.Errorf("label removed: exit %d\n%s", code, out)
	}
	base := writeFile(t, filepath.Join(t.TempDir(), "base.cfg"), "frontend account-service\n  mode http\n")
	if code, _, stderr := run(t, "diff", example, example, "--base", base); code != ExitUsage || !strings.Contains(stderr, "already has a") {
		t.Errorf("a render error: exit %d, %q", code, stderr)
	}
}

// failWriter fails every write, like a full disk.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// TestSmallEdges: output that cannot be written fails the command; an
// empty --base is refused; a ConfigMapList is read.
func TestSmallEdges(t *testing.T) {
	haproxytest.Binary(t)
	var errOut strings.Builder
	if code := RunIO(t.Context(), []string{"validate", example}, nil, failWriter{}, &errOut); code != ExitProblem || !strings.Contains(errOut.String(), "write the output") {
		t.Errorf("a full disk: exit %d, %q", code, errOut.String())
	}
	empty := writeFile(t, filepath.Join(t.TempDir(), "base.cfg"), "\n")
	if code, _, stderr := run(t, "render", example, "--base", empty); code != ExitUsage || !strings.Contains(stderr, "is empty") {
		t.Errorf("an empty --base: exit %d, %q", code, stderr)
	}
	data, _ := os.ReadFile(example)
	cmDoc := strings.SplitN(string(data), "\n---\n", 2)[0]
	list := "apiVersion: v1\nkind: ConfigMapList\nitems:\n- " + strings.ReplaceAll(strings.TrimPrefix(cmDoc[strings.Index(cmDoc, "apiVersion"):], ""), "\n", "\n  ") + "\n"
	file := writeFile(t, filepath.Join(t.TempDir(), "list.yaml"), list)
	if code, out, _ := run(t, "validate", file); code != ExitOK || !strings.Contains(out, "service account-service") {
		t.Errorf("a ConfigMapList: exit %d\n%s", code, out)
	}
}
