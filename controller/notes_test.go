package controller

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// TestWritesOneEventPerVerb: a sync's writes are said in one Event per
// verb, in order, bounded in length; the counter still counts each.
func TestWritesOneEventPerVerb(t *testing.T) {
	rec := record.NewFakeRecorder(10)
	c := &Controller{log: slog.New(slog.NewTextHandler(io.Discard, nil)), recorder: rec, notes: map[cache.ObjectName]*writeNote{}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "a"}}
	c.wrote(cm, "Created", "Deployment", "a-canary-1.0", "")
	c.wrote(cm, "Updated", "Service", "a-canary", "spec.selector")
	c.wrote(cm, "Created", "Service", "a-haproxy", "")
	c.flushWrites(cache.MetaObjectToName(cm))
	want := []string{"Normal Created Created 2 objects: Deployment a-canary-1.0, Service a-haproxy", "Normal Updated Updated Service a-canary (spec.selector)"}
	for _, w := range want {
		if got := <-rec.Events; got != w {
			t.Errorf("event %q, want %q", got, w)
		}
	}
	if c.Writes.Load() != 3 {
		t.Errorf("writes counted: %d", c.Writes.Load())
	}
	c.flushWrites(cache.MetaObjectToName(cm))
	if len(rec.Events) != 0 {
		t.Errorf("a second flush said again: %q", <-rec.Events)
	}
	for i := 0; i < 100; i++ {
		c.wrote(cm, "Deleted", "Deployment", "a-canary-0."+strings.Repeat("9", 20), "")
	}
	c.flushWrites(cache.MetaObjectToName(cm))
	got := <-rec.Events
	if len(got) > maxNote+100 || !strings.Contains(got, "Deleted 100 objects: ") || !strings.Contains(got, "more (the controller's log names each)") {
		t.Errorf("a long Event: %d bytes: %q", len(got), got)
	}
}

func TestResynced(t *testing.T) {
	a := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "7"}}
	b := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "8"}}
	if !resynced(a, a.DeepCopy()) || resynced(a, b) {
		t.Error("resynced: same resourceVersion is a resync, another is a change")
	}
}
