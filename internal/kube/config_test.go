package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigLoadingRules: $KUBECONFIG is read like kubectl reads it, and
// --context picks another context than the current one.
func TestConfigLoadingRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	kubeconfig := `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://a.example:6443"}
- name: b
  cluster: {server: "https://b.example:6443"}
users:
- name: u
  user: {token: x}
contexts:
- name: a
  context: {cluster: a, user: u}
- name: b
  context: {cluster: b, user: u}
current-context: a
`
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
	for _, tc := range []struct{ context, want string }{{"", "https://a.example:6443"}, {"b", "https://b.example:6443"}} {
		rc, err := Config("", tc.context)
		if err != nil || rc.Host != tc.want {
			t.Errorf("context %q: host %v, err %v; want %s", tc.context, rc, err, tc.want)
		}
	}
	if _, err := Config("", "nope"); err == nil {
		t.Error("an unknown context: want an error")
	}
}

// TestConfigNamesMissingKubeconfig: $KUBECONFIG set to a file that is not
// there is named as such, not "set $KUBECONFIG".
func TestConfigNamesMissingKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", "/nonexistent/kubeconfig")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, err := Config("", "")
	if err == nil || !strings.Contains(err.Error(), "$KUBECONFIG names /nonexistent/kubeconfig, which does not exist") {
		t.Errorf("err %v", err)
	}
}
