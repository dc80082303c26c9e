package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// TestWebhookKeep: the leader makes the CA and the serving certificate,
// sets the caBundle, writes nothing at rest, rotates the serving
// certificate (same CA) when a third of its life is left; with no
// configuration to keep (cert-manager's mode) it never writes the Secret.
func TestWebhookKeep(t *testing.T) {
	ctx := context.Background()
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "tc", ResourceVersion: "1"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "specs.trackrouter.dev"}}}
	client := fake.NewClientset(vwc)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := New(Config{Secret: "sys/wh", Configuration: "tc", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: 9 * time.Hour}, client, log)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	if err := w.Keep(ctx, now); err != nil {
		t.Fatal(err)
	}
	s, err := client.CoreV1().Secrets("sys").Get(ctx, "wh", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "tc", metav1.GetOptions{})
	if !bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, s.Data[keyCACert]) {
		t.Errorf("the caBundle is not the CA")
	}
	writes := len(client.Actions())
	if err := w.Keep(ctx, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions()[writes:] {
		if a.GetVerb() != "get" {
			t.Errorf("at rest: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	if err := w.Keep(ctx, now.Add(7*time.Hour)); err != nil { // 2 h left of 9: rotate
		t.Fatal(err)
	}
	s2, _ := client.CoreV1().Secrets("sys").Get(ctx, "wh", metav1.GetOptions{})
	if bytes.Equal(s2.Data[keyServeCert], s.Data[keyServeCert]) || !bytes.Equal(s2.Data[keyCACert], s.Data[keyCACert]) {
		t.Errorf("rotation: a new serving certificate under the same CA expected")
	}

	// cert-manager's Secret, and no configuration to keep: never written.
	cm := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wh", Namespace: "sys"}, Data: map[string][]byte{"ca.crt": []byte("x"), "tls.crt": []byte("y"), "tls.key": []byte("z")}}
	client = fake.NewClientset(cm)
	w = New(Config{Secret: "sys/wh"}, client, log)
	if err := w.Keep(ctx, now); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("cert-manager's mode: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

// TestWebhookCreateComparedWithRelease: a spec created again (kubectl
// replace --force, a delete and a create) is compared with what its
// release last saw running: moving a later stage takes the verb promote
// (the fake API server's SubjectAccessReview allows nothing).
func TestWebhookCreateComparedWithRelease(t *testing.T) {
	spec := "service: web\nport: 80\ntracks:\n  internal: {version: \"1.1\", gates: [approval]}\n  production: {version: \"%s\"}\ndefault: all\nbackends:\n  all: {production: 100}\n  internal: {internal: 100}\ngroups: {INTERNAL: internal}\n"
	rel := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-release", Namespace: "shop", Labels: map[string]string{"trackrouter.dev/release-of": "web"}},
		Data: map[string]string{"state": `{"phase":"gates","version":"1.1","stage":"internal","seen":{"internal":"1.1","production":"1.0"}}`}}
	w := New(Config{}, fake.NewClientset(rel), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for version, allowed := range map[string]bool{"1.0": true, "9.9": false} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"trackrouter.dev/service": "web"}},
			Data: map[string]string{"service.yaml": fmt.Sprintf(spec, version)}}
		raw, _ := json.Marshal(cm)
		resp := w.review(context.Background(), &admissionv1.AdmissionRequest{Kind: metav1.GroupVersionKind{Kind: "ConfigMap"}, Operation: admissionv1.Create,
			Namespace: "shop", Name: "web", Object: runtime.RawExtension{Raw: raw}, UserInfo: authnv1.UserInfo{Username: "dev-bob"}})
		if resp.Allowed != allowed || !allowed && !strings.Contains(resp.Result.Message, "tracks.production.version 1.0->9.9 (as the release last saw it)") {
			t.Errorf("production %s: allowed %v (want %v): %v", version, resp.Allowed, allowed, resp.Result)
		}
	}
}
