package source

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/trackrouter/trackrouter/weights"
)

// TestRejectionsCreateOnly: the sidecar's Role lets it create Events, not
// patch them. The same rejection said three times (client-go would count
// the repeats on the first Event by a patch) is three Events, and no
// patch or update is ever tried.
func TestRejectionsCreateOnly(t *testing.T) {
	client := fake.NewClientset()
	var refused []string
	client.PrependReactor("*", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if v := a.GetVerb(); v == "patch" || v == "update" {
			refused = append(refused, v)
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "", errors.New("the sidecar may only create Events"))
		}
		return false, nil, nil
	})
	src := &ConfigMapSource{Client: client, Namespace: "shop", Name: "web", Log: slog.New(slog.DiscardHandler)}
	rec := src.Recorder("trackrouter")
	for range 3 {
		rec.Rejected(weights.ConfigMapSource("shop", "web"), errors.New("backends.main.canary: weight 999 is out of range 0-256"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := client.CoreV1().Events("shop").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want 3 Events for 3 rejections, found %d (refused verbs: %v)", len(list.Items), refused)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rec.Stop()
	if len(refused) > 0 {
		t.Errorf("the recorder tried %v on Events: the sidecar may only create them", refused)
	}
}
