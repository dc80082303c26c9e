package report

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/trackrouter/trackrouter/internal/contract"
)

// TestReportsCoalesced: a burst of reports that differ only in which
// servers are down (a server flapping) is written at most once per
// MinInterval, and the last one written is the latest; a change of what
// HAProxy runs is written at once.
func TestReportsCoalesced(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-haproxy-status", Namespace: "ns"}}
	client := fake.NewClientset(cm)
	var writes atomic.Int64
	client.PrependReactor("patch", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		writes.Add(1)
		return false, nil, nil
	})
	s := &StatusReporter{Client: client, Namespace: "ns", Name: cm.Name, Pod: "web-haproxy-a", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MinInterval: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	start := time.Now()
	for i := range 50 { // 50 flips of a server over ~250 ms
		r := &contract.Report{Stamp: "trackrouter:a", Since: start}
		if i%2 == 0 {
			r.Down = map[string]map[string]string{"main": {"production": "down"}}
		}
		s.Report(r)
		time.Sleep(5 * time.Millisecond)
	}
	s.Report(&contract.Report{Stamp: "trackrouter:a", Since: start, Down: map[string]map[string]string{"main": {"canary": "down"}}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := client.CoreV1().ConfigMaps("ns").Get(ctx, cm.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got.Data["web-haproxy-a"], `"canary":"down"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the latest report not written after 5 s: %q", got.Data["web-haproxy-a"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	// One write at once, then at most one per 200 ms.
	if n, most := writes.Load(), int64(took/(200*time.Millisecond))+2; n > most {
		t.Errorf("%d writes for 51 reports in %s, want at most %d (one per 200 ms)", n, took.Round(time.Millisecond), most)
	}
	t.Logf("51 reports in %s: %d writes", took.Round(time.Millisecond), writes.Load())

	// A change of what HAProxy runs is written at once, gap or not.
	before := writes.Load()
	s.Report(&contract.Report{Stamp: "trackrouter:b", Since: start})
	deadline = time.Now().Add(150 * time.Millisecond)
	for writes.Load() < before+1 {
		if time.Now().After(deadline) {
			t.Fatalf("a new stamp not written within 150 ms of the last write (the gap is for down servers only)")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
