package releases

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/trackrouter/trackrouter/internal/contract"
)

// TestSamplesFromThePod: the samples are read where the API server says
// the pod is (its IP, the port its container names metrics, the fixed
// path), whatever its report claims; a pod without an IP or such a port
// is named as not measurable.
func TestSamplesFromThePod(t *testing.T) {
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "haproxy", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 1}}},
			{Name: contract.ContainerRouter, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9100}}},
		}},
		Status: corev1.PodStatus{PodIP: "10.244.0.7"},
	}
	if got, err := PodSamplesURL(pod); err != nil || got != "http://10.244.0.7:9100"+contract.SamplesPath {
		t.Errorf("PodSamplesURL = %q, %v; want the pod's IP, its metrics port and %s", got, err, contract.SamplesPath)
	}
	pod.Status.PodIP = "fd00::7"
	if got, _ := PodSamplesURL(pod); got != "http://[fd00::7]:9100"+contract.SamplesPath {
		t.Errorf("IPv6: %q", got)
	}
	pod.Status.PodIP = ""
	if _, err := PodSamplesURL(pod); err == nil || !strings.Contains(err.Error(), "no IP") {
		t.Errorf("a pod without an IP: %v", err)
	}
	pod.Status.PodIP = "10.244.0.7"
	pod.Spec.Containers = pod.Spec.Containers[:1]
	if _, err := PodSamplesURL(pod); err == nil || !strings.Contains(err.Error(), "no port named metrics") {
		t.Errorf("a pod without the sidecar's metrics port: %v", err)
	}
}

// TestSamplesReadFollowsNoRedirect: a sidecar address that redirects
// elsewhere is not read (nor is where it points), and says why.
func TestSamplesReadFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.Write([]byte(`{"version":1,"worker":"1","servers":[]}`))
	}))
	defer other.Close()
	redirect := httptest.NewServer(http.RedirectHandler(other.URL+contract.SamplesPath, http.StatusFound))
	defer redirect.Close()
	_, err := contract.FetchSamples(context.Background(), samplesClient(), redirect.URL+contract.SamplesPath)
	if err == nil || !strings.Contains(err.Error(), "follows no redirect") {
		t.Errorf("a redirect: %v; want it refused", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect's target was read %d times", n)
	}
	if _, err := contract.FetchSamples(context.Background(), samplesClient(), other.URL+contract.SamplesPath); err != nil {
		t.Errorf("a direct read: %v", err)
	}
}
