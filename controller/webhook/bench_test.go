package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/trackrouter/trackrouter/examples"
)

// BenchmarkWebhookLatency is the webhook's answer time for the example
// spec, over HTTPS with keep-alive as the API server calls it: the review
// validates and renders the spec (haproxy -c does not run in the webhook:
// the sidecar runs it) and lists the namespace's specs of the service (a
// fake client here: on a cluster add one API read). Prints p50 and p99
// over 2,000 reviews.
//
//	go test ./controller/webhook -run '^$' -bench WebhookLatency -benchtime 1x
func BenchmarkWebhookLatency(b *testing.B) {
	cm, _, err := examples.AccountServiceObjects("shop")
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(cm)
	review, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID("1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Namespace: "shop", Name: cm.Name,
			Operation: admissionv1.Update, Object: runtime.RawExtension{Raw: raw}}})
	w := New(Config{}, fake.NewClientset(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewTLSServer(http.HandlerFunc(w.handle))
	defer srv.Close()
	client := srv.Client()
	for i := 0; i < b.N; i++ {
		var took []time.Duration
		for j := 0; j < 2000; j++ {
			start := time.Now()
			resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(review))
			if err != nil {
				b.Fatal(err)
			}
			var out admissionv1.AdmissionReview
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			took = append(took, time.Since(start))
			if out.Response == nil || !out.Response.Allowed {
				b.Fatalf("the example refused: %+v", out.Response)
			}
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		p50, p99 := took[len(took)/2], took[len(took)*99/100]
		b.ReportMetric(float64(p99.Microseconds())/1000, "ms-p99")
		fmt.Printf("webhook review of the example spec: p50 %s, p99 %s over %d\n", p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), len(took))
	}
}
