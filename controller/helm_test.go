package controller

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
)

// chart is the Helm chart, beside the kustomize install.
const chart = "../examples/helm/track-controller"

// helm runs the helm binary that make kube-bins builds, with its own
// home, and returns its combined output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := testcluster.Helm()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// objects decodes a multi-document manifest into objects by kind and
// name, with the labels Helm's conventions add left out.
func objects(t *testing.T, manifest []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range bytes.Split(manifest, []byte("\n---")) {
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if obj == nil {
			continue
		}
		meta, _ := obj["metadata"].(map[string]any)
		if labels, ok := meta["labels"].(map[string]any); ok {
			for k := range labels {
				if strings.HasPrefix(k, "app.kubernetes.io/") || k == "helm.sh/chart" {
					delete(labels, k)
				}
			}
			if len(labels) == 0 {
				delete(meta, "labels")
			}
		}
		out[fmt.Sprintf("%s %v/%v", obj["kind"], meta["namespace"], meta["name"])] = obj
	}
	return out
}

// TestHelmChartIsTheInstall: helm lint is clean, and the chart with its
// default values renders the objects of examples/install (but its
// Namespace, which helm install --create-namespace makes): one install,
// two ways to apply it.
func TestHelmChartIsTheInstall(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", chart); err != nil || !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	out, err := helm(t, "template", "track-controller", chart, "--namespace", "trackrouter-system")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	got := objects(t, []byte(out))
	want := map[string]map[string]any{}
	for _, f := range []string{"track-controller.yaml", "release-access.yaml", "controller-scope.yaml"} {
		manifest, err := os.ReadFile("../examples/install/" + f)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(want, objects(t, manifest))
	}
	delete(want, "Namespace <nil>/trackrouter-system")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the chart's defaults and examples/install differ (-install +chart):\n%s", diff)
	}

	// Values change what they say, and only that.
	out, err = helm(t, "template", "tc", chart, "--namespace", "ops", "--set", "image.tag=0.2.0,replicas=3,kubeAPI.qps=20,webhook.enabled=false",
		"--set", "alerts.webhookURL=https://hooks.example.com/x,board.addr=:8089", "--set-string", "alerts.smtp.from=Ops: team <ops@example.com>")
	if err != nil {
		t.Fatalf("helm template with values: %v\n%s", err, out)
	}
	got = objects(t, []byte(out))
	d := got["Deployment ops/tc"]
	if d == nil {
		t.Fatalf("no Deployment ops/tc in:\n%s", out)
	}
	js := fmt.Sprint(d)
	for _, want := range []string{"ghcr.io/trackrouter/trackrouter:0.2.0", "replicas:3", "--kube-api-qps=20", "--board-addr=:8089", "--lease-namespace=ops", "--lease-name=tc",
		"--alert-smtp-from=Ops: team <ops@example.com>"} {
		if !strings.Contains(js, want) {
			t.Errorf("the Deployment does not say %q: %s", want, js)
		}
	}
	if strings.Contains(js, "--webhook-addr") || got["ValidatingWebhookConfiguration <nil>/tc"] != nil {
		t.Errorf("webhook.enabled=false still serves a webhook:\n%s", out)
	}
	if s := got["Secret ops/tc-alerts"]; s == nil || !strings.Contains(fmt.Sprint(s), "https://hooks.example.com/x") {
		t.Errorf("alerts.webhookURL made no Secret:\n%s", out)
	}
}

// TestHelmValuesRefused: values the controller could not run with are
// refused by the chart's schema, before anything reaches a cluster, with
// the field named.
func TestHelmValuesRefused(t *testing.T) {
	for _, tc := range []struct {
		set, field string
	}{
		{"image.tag=", "/image/tag"},
		{"image.repository=ghcr.io/trackrouter/trackrouter:0.1.0", "/image/repository"},
		{"kubeAPI.qps=0", "/kubeAPI/qps"},
		{"kubeAPI.burst=0", "/kubeAPI/burst"},
		{"alerts.webhookURL=hooks.slack.com/services/x", "/alerts/webhookURL"},
		{"alerts.smtp.addr=mail.example.com", "/alerts/smtp/addr"},
		{"healthInterval=10", "/healthInterval"},
		{"replica=3", "replica"},
		{"webhook.failurePolicy=fail", "/webhook/failurePolicy"},
		{"healthInterval=0s", "/healthInterval"},
	} {
		out, err := helm(t, "template", "track-controller", chart, "--set", tc.set)
		if err == nil {
			t.Errorf("--set %s: rendered", tc.set)
			continue
		}
		if !strings.Contains(out, "schema") || !strings.Contains(out, tc.field) {
			t.Errorf("--set %s: the error does not name %s:\n%s", tc.set, tc.field, out)
		}
	}
	// A release name that cannot name a Service.
	if out, err := helm(t, "template", "tc.v1", chart); err == nil || !strings.Contains(out, `release name "tc.v1": want a DNS-1035 label`) {
		t.Errorf("release tc.v1: %v\n%s", err, out)
	}
}

// TestHelmInstallOnCluster installs the chart with helm on the test
// cluster under another release name and namespace, then the controller
// runs as the chart's ServiceAccount and converges the example; helm
// uninstall then removes every object the chart made.
func TestHelmInstallOnCluster(t *testing.T) {
	c := testcluster.Get(t)
	const release, ns, appNS = "tc-helm", "trackrouter-helm", "shop-helm"
	const image = "registry.example.com/trackrouter:0.3.0"
	if out, err := helm(t, "install", release, chart, "--kubeconfig", c.Kubeconfig, "--namespace", ns, "--create-namespace",
		"--set", "image.repository=registry.example.com/trackrouter,image.tag=0.3.0"); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	dir := t.TempDir()
	abs, _ := filepath.Abs("../examples/account-service")
	rel, err := filepath.Rel(filepath.Join(dir, "app"), abs)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "app", "kustomization.yaml"), fmt.Sprintf("resources: [%s]\nnamespace: %s\n", rel, appNS))
	kubectl, err := testcluster.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(kubectl, "--kubeconfig", c.Kubeconfig, "create", "namespace", appNS).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	convergeExample(t, c, installed{ns: ns, name: release, image: image}, filepath.Join(dir, "app"), appNS)

	if out, err := helm(t, "uninstall", release, "--kubeconfig", c.Kubeconfig, "--namespace", ns, "--wait"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	for what, err := range map[string]error{
		"ClusterRole":        getErr(c.Client.RbacV1().ClusterRoles().Get(t.Context(), release, getOpts)),
		"ClusterRoleBinding": getErr(c.Client.RbacV1().ClusterRoleBindings().Get(t.Context(), release, getOpts)),
		"Deployment":         getErr(c.Client.AppsV1().Deployments(ns).Get(t.Context(), release, getOpts)),
	} {
		if err == nil {
			t.Errorf("helm uninstall left the %s %s", what, release)
		}
	}
}

var getOpts = metav1.GetOptions{}

// getErr is the error of a Get.
func getErr[T any](_ T, err error) error { return err }
