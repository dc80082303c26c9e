package source

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/trackrouter/trackrouter/weights"
)

// TestAccept is the controller's acceptance rule as the sidecar sees it:
// the PodTemplate exists, and so do the track Services, annotated for this
// ConfigMap; a track with an address needs no Service.
func TestAccept(t *testing.T) {
	spec, err := weights.ParseService(weights.Source{File: "service.yaml"}, []byte(
		"service: web\nport: 80\ntracks:\n  canary: {version: v2}\n  production: {version: v1}\n  local: {version: v0, address: \"127.0.0.1:1\"}\n"+
			"default: all\nbackends:\n  all: {production: 9, canary: 1, local: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	template := &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}}
	svc := func(name, spec string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Annotations: map[string]string{specAnnotation: spec}}}
	}
	tests := []struct {
		name    string
		objects []runtime.Object
		want    string // "" means accepted
	}{
		{"all there", []runtime.Object{template, svc("web-canary", "web"), svc("web-production", "web")}, ""},
		{"template missing", []runtime.Object{svc("web-canary", "web"), svc("web-production", "web")}, "template: PodTemplate shop/web does not exist"},
		{"a Service not created yet", []runtime.Object{template, svc("web-production", "web")}, "tracks.canary: Service shop/web-canary does not exist yet"},
		{"a second spec for the service", []runtime.Object{template, svc("web-canary", "web-old"), svc("web-production", "web-old")},
			`Service shop/web-canary belongs to the spec in ConfigMap web-old: this ConfigMap is a second spec for service "web"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &ConfigMapSource{Client: fake.NewClientset(tc.objects...), Namespace: "shop", Name: "web", Log: slog.New(slog.DiscardHandler)}
			err := src.Accept(spec)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want accepted, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("want an error containing %q, got %v", tc.want, err)
			case tc.want != "" && time.Now().UnixNano() >= src.fastUntil.Load():
				t.Error("a refusal must make the source read the ConfigMap every second for a while")
			}
		})
	}
}
