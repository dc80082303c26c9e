package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/trackrouter/trackrouter/controller/webhook"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/speccorpus"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// warnings collects the API server's warnings (admission warnings).
type warnings struct {
	mu   sync.Mutex
	seen []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	w.seen = append(w.seen, text)
	w.mu.Unlock()
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

// TestWebhookOnCluster: kube-apiserver calls track-controller's webhook
// on loopback. Every case of the bad-spec corpus is refused at create with
// its field and line inside service.yaml; the good spec is accepted, its
// warnings come back as warnings; a dry run refuses the same; a second
// spec of a service is refused; the certificate rotates every few seconds
// under a loop of updates without one refusal; with the controller
// stopped, labelled ConfigMaps are refused and unlabelled ones are not.
func TestWebhookOnCluster(t *testing.T) {
	c := testcluster.Get(t)
	ctx := context.Background()
	ns := fmt.Sprintf("webhook-%d", nsCounter.Add(1))
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	warned := &warnings{}
	rc.WarningHandler = warned
	client := kubernetes.NewForConfigOrDie(rc)

	addr := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	name := "track-controller-" + ns
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "specs.trackrouter.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://" + addr + webhook.Path)},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"CREATE", "UPDATE"}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: weights.ServiceLabel, Operator: metav1.LabelSelectorOpExists}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          ptr.To[int32](5),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if _, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	startCtrl := func() func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Execute(ctx, Config{Kubeconfig: c.Kubeconfig, Namespace: ns, RouterImage: "trackrouter:test", Workers: 1,
				Webhook: WebhookConfig{Addr: addr, Secret: ns + "/webhook", Configuration: name, IPs: []net.IP{net.ParseIP("127.0.0.1")},
					Validity: 6 * time.Second, RotateBefore: 3 * time.Second, Refresh: time.Second}}, log)
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	stop := startCtrl()
	defer func() { stop() }()

	spec := func(name, text string, labelled bool) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{weights.DataKey: text}}
		if labelled {
			cm.Labels = map[string]string{weights.ServiceLabel: "account-service"}
		}
		return cm
	}
	// Until the leader made the certificate and set the caBundle, the API
	// server cannot call the webhook: a bad spec is refused either way;
	// wait for the webhook's own words.
	poll(t, "the webhook answers", func() error {
		_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, spec("probe", "service: [", true), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), "invalid YAML") {
			return fmt.Errorf("%v", err)
		}
		return nil
	})

	t.Run("the bad-spec corpus is refused with its field and line", func(t *testing.T) {
		for _, tc := range speccorpus.Bad {
			text := tc.Spec()
			_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, spec("bad", text, true), metav1.CreateOptions{})
			if err == nil {
				t.Errorf("%s: accepted", tc.Name)
				client.CoreV1().ConfigMaps(ns).Delete(ctx, "bad", metav1.DeleteOptions{})
				continue
			}
			want := tc.Want[0]
			where := fmt.Sprintf("configmap/%s/bad:%d: %s", ns, want.Line, want.Field)
			if want.Line == 0 {
				where = ""
			}
			if !strings.Contains(err.Error(), where) || !strings.Contains(err.Error(), want.Msg) || !strings.Contains(err.Error(), "specs.trackrouter.dev") {
				t.Errorf("%s: refused with %q, want %q and %q", tc.Name, err, where, want.Msg)
			}
		}
	})
	t.Run("dry run refuses the same", func(t *testing.T) {
		_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, spec("bad", strings.Replace(speccorpus.Base, "canary: 5,", "canary: 300,", 1), true), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), ":16: backends.canary.canary: weight 300 is out of range 0-256") {
			t.Errorf("dry run: %v", err)
		}
	})
	t.Run("the good spec is accepted, its warnings said", func(t *testing.T) {
		warned.take()
		text := strings.Replace(speccorpus.Base, "production: 95}", "production: 90}", 1) // a sum of 95: a warning
		if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, spec("account-service", text, true), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if w := strings.Join(warned.take(), "\n"); !strings.Contains(w, "backends.canary") {
			t.Errorf("warnings: %q", w)
		}
		_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, spec("account-service-2", speccorpus.Base, true), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "already has its spec in ConfigMap "+ns+"/account-service") {
			t.Errorf("a second spec of the service: %v", err)
		}
	})
	t.Run("rotation under a loop of updates refuses nothing", func(t *testing.T) {
		ns, name := ns, "webhook"
		first, err := c.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		end := time.Now().Add(10 * time.Second)
		n := 0
		for i := 0; time.Now().Before(end); i++ {
			cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "account-service", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cm.Data[weights.DataKey] = strings.Replace(speccorpus.Base, "canary: 5,", fmt.Sprintf("canary: %d,", i%50+1), 1)
			if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("update %d refused: %v", i, err)
			}
			n++
			time.Sleep(50 * time.Millisecond)
		}
		last, err := c.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if string(last.Data["tls.crt"]) == string(first.Data["tls.crt"]) || string(last.Data["ca.crt"]) != string(first.Data["ca.crt"]) {
			t.Errorf("over 10 s the serving certificate did not rotate, or the CA changed")
		}
		t.Logf("%d updates while the serving certificate rotated, 0 refused", n)
	})
	t.Run("controller stopped: labelled refused, unlabelled not", func(t *testing.T) {
		stop()
		stop = func() {}
		_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, spec("later", speccorpus.Base, true), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "specs.trackrouter.dev") {
			t.Errorf("labelled, the webhook down: %v", err)
		}
		if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, spec("plain", "anything: [", false), metav1.CreateOptions{}); err != nil {
			t.Errorf("unlabelled, the webhook down: %v", err)
		}
	})
}

// TestBoardFromController: --board-addr serves the board, read-only, from
// the controller's own caches' client: the example's row is on it.
func TestBoardFromController(t *testing.T) {
	c := testcluster.Get(t)
	_, ns, _ := setup(t)
	addr := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Execute(ctx, Config{Kubeconfig: c.Kubeconfig, Namespace: ns, RouterImage: "trackrouter:test", Workers: 1, BoardAddr: addr},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	poll(t, "the example on the controller's board", func() error {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), `data-service="`+ns+`/account-service"`) {
			return fmt.Errorf("no row for account-service")
		}
		return nil
	})
	resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405 (the board only reads)", resp.StatusCode)
	}
}
