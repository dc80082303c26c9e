package controller

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	w := newWebhook(WebhookConfig{Secret: "sys/wh", Configuration: "tc", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: 9 * time.Hour}, client, log)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	if err := w.keep(ctx, now); err != nil {
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
	if err := w.keep(ctx, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions()[writes:] {
		if a.GetVerb() != "get" {
			t.Errorf("at rest: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	if err := w.keep(ctx, now.Add(7*time.Hour)); err != nil { // 2 h left of 9: rotate
		t.Fatal(err)
	}
	s2, _ := client.CoreV1().Secrets("sys").Get(ctx, "wh", metav1.GetOptions{})
	if bytes.Equal(s2.Data[keyServeCert], s.Data[keyServeCert]) || !bytes.Equal(s2.Data[keyCACert], s.Data[keyCACert]) {
		t.Errorf("rotation: a new serving certificate under the same CA expected")
	}

	// cert-manager's Secret, and no configuration to keep: never written.
	cm := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wh", Namespace: "sys"}, Data: map[string][]byte{"ca.crt": []byte("x"), "tls.crt": []byte("y"), "tls.key": []byte("z")}}
	client = fake.NewClientset(cm)
	w = newWebhook(WebhookConfig{Secret: "sys/wh"}, client, log)
	if err := w.keep(ctx, now); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("cert-manager's mode: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}
