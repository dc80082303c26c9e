package controller

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/trackrouter/trackrouter/weights"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/controller")

// TestDesiredGolden writes every object the controller applies for a spec
// (the apply configurations as sent) to testdata/controller/<case>.golden.yaml,
// so a reviewer sees each Deployment, Service and RBAC object.
// Regenerate with: go test ./controller -short -run TestDesiredGolden -update
func TestDesiredGolden(t *testing.T) {
	cm, tmpl := exampleObjects(t)
	tests := []struct {
		name string
		edit func(spec string) string
	}{
		{"account-service", func(s string) string { return s }},
		{"one-track", func(string) string {
			return "service: web\nport: 80\ntracks:\n  production: {version: v2, replicas: 3}\ndefault: all\nbackends:\n  all: {production: 1}\nrouter: {replicas: 2}\n"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cm := cm.DeepCopy()
			cm.Data[weights.DataKey] = tc.edit(cm.Data[weights.DataKey])
			spec, err := weights.ParseService(weights.Source{File: "service.yaml", Namespace: cm.Namespace, Name: cm.Name}, []byte(cm.Data[weights.DataKey]))
			if err != nil {
				t.Fatal(err)
			}
			tmpl := tmpl.DeepCopy()
			if spec.Service != "account-service" {
				tmpl.Template.Spec.Containers[0].Name = spec.Service
			}
			d, err := build(spec, cm, tmpl, "registry.example.com/trackrouter:v1")
			if err != nil {
				t.Fatal(err)
			}
			var docs []string
			add := func(ac any, err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				b, err := yaml.Marshal(ac)
				if err != nil {
					t.Fatal(err)
				}
				docs = append(docs, string(b))
			}
			for _, s := range d.services {
				add(toApply[corev1ac.ServiceApplyConfiguration](s, "v1", "Service"))
			}
			add(toApply[corev1ac.ServiceAccountApplyConfiguration](d.account, "v1", "ServiceAccount"))
			add(toApply[rbacv1ac.RoleApplyConfiguration](d.role, "rbac.authorization.k8s.io/v1", "Role"))
			add(toApply[rbacv1ac.RoleBindingApplyConfiguration](d.roleBinding, "rbac.authorization.k8s.io/v1", "RoleBinding"))
			for _, track := range spec.TrackNames() {
				add(toApply[appsv1ac.DeploymentApplyConfiguration](d.tracks[track], "apps/v1", "Deployment"))
			}
			add(toApply[appsv1ac.DeploymentApplyConfiguration](d.router, "apps/v1", "Deployment"))
			got := strings.Join(docs, "---\n")
			golden := filepath.Join("..", "testdata", "controller", tc.name+".golden.yaml")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./controller -short -run TestDesiredGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("desired objects differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// TestMetricsPortsAvoidTheServicePort: a spec may listen on 8404 or 9101;
// the tier's metrics ports move aside.
func TestMetricsPortsAvoidTheServicePort(t *testing.T) {
	for _, tc := range []struct{ port, sidecar, haproxy int }{{8080, 9101, 8404}, {8404, 9101, 8405}, {9101, 9102, 8404}} {
		if s, h := metricsPorts(tc.port); s != tc.sidecar || h != tc.haproxy {
			t.Errorf("port %d: %d, %d; want %d, %d", tc.port, s, h, tc.sidecar, tc.haproxy)
		}
	}
}
