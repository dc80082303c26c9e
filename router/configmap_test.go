package router

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/router/source"
	"github.com/trackrouter/trackrouter/weights"
)

func TestMain(m *testing.M) { os.Exit(testcluster.Main(m)) }

// TestConfigMapSource runs the sidecar in API mode against a real
// kube-apiserver: edits of the ConfigMap made with client-go are applied,
// an invalid edit gets a Warning Event, traffic keeps flowing while the API
// server is down, and an edit made after it returns is applied.
func TestConfigMapSource(t *testing.T) {
	c := testcluster.Get(t)
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nsObj, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sidecar-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name
	template := &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: "account-service"},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "account-service", Image: "example.com/a:v1"}}}}}
	if _, err := c.Client.CoreV1().PodTemplates(ns).Create(ctx, template, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cms := c.Client.CoreV1().ConfigMaps(ns)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "account-service", Labels: map[string]string{weights.ServiceLabel: "account-service"}},
		Data:       map[string]string{weights.DataKey: h.spec(20, 80)},
	}
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src := &source.ConfigMapSource{Client: c.Client, Namespace: ns, Name: "account-service", Log: h.router.Log, Check: time.Second}
	events := src.Recorder("trackrouter")
	defer events.Stop()
	h.router.Rejecter = events
	h.router.Accept = src.Accept
	srcCtx, stopSrc := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { src.Run(srcCtx, h.router.Submit); close(done) }()
	defer func() { stopSrc(); <-done }()

	update := func(data string) {
		t.Helper()
		cur, err := cms.Get(ctx, "account-service", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Data[weights.DataKey] = data
		if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("the ConfigMap's weights", func() bool { return h.runtimeUpdates() == 1 })
	if got := h.send(100, "FREE"); got["canary"] != 20 {
		t.Errorf("from the ConfigMap: want canary 20 of 100, got %v", got)
	}

	update(h.spec(35, 65))
	h.waitFor("an edit through the API", func() bool { return h.runtimeUpdates() == 2 })
	if got := h.send(100, "FREE"); got["canary"] != 35 {
		t.Errorf("after an edit: want canary 35 of 100, got %v", got)
	}

	update(h.spec(999, 1))
	h.waitFor("rejection", func() bool { return h.rejected() == 1 })
	h.waitFor("a Warning Event on the ConfigMap", func() bool {
		list, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=account-service,reason=InvalidSpec"})
		return err == nil && len(list.Items) > 0 && list.Items[0].Type == corev1.EventTypeWarning &&
			strings.Contains(list.Items[0].Message, "backends.canary.canary: weight 999 is out of range 0-256")
	})

	// A rename of the service without its label: the controller ignores
	// such a spec, so the sidecar must not route to Services that will
	// never exist.
	update(strings.Replace(h.spec(35, 65), "service: account-service", "service: acct2", 1))
	h.waitFor("rejection of the renamed spec", func() bool { return h.rejected() == 2 })
	if strings.Contains(h.configOnDisk(), "acct2") {
		t.Error("the renamed spec reached haproxy.cfg")
	}
	h.waitFor("a Warning Event naming the label", func() bool {
		list, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=account-service,reason=InvalidSpec"})
		if err != nil {
			return false
		}
		for _, e := range list.Items {
			if strings.Contains(e.Message, `label "account-service" does not match service "acct2"`) {
				return true
			}
		}
		return false
	})

	// A spec naming a PodTemplate that does not exist: the controller
	// deploys nothing for it, so the sidecar does not apply it; once the
	// template exists, it does, without another edit.
	update(strings.Replace(h.spec(45, 55), "port: 8080\n", "port: 8080\ntemplate: later\n", 1))
	h.waitFor("rejection of the spec without its template", func() bool { return h.rejected() == 3 })
	if got := h.send(100, "FREE"); got["canary"] != 35 {
		t.Errorf("while the template is missing: want the last good split (canary 35 of 100), got %v", got)
	}
	later := template.DeepCopy()
	later.Name, later.ResourceVersion = "later", ""
	if _, err := c.Client.CoreV1().PodTemplates(ns).Create(ctx, later, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the spec applied once its template exists", func() bool { return h.runtimeUpdates() == 3 })
	if got := h.send(100, "FREE"); got["canary"] != 45 {
		t.Errorf("after the template appeared: want canary 45 of 100, got %v", got)
	}

	c.StopAPIServer()
	if got := h.send(100, "FREE"); got["canary"] != 45 {
		t.Errorf("while the API server is down: want the last good split (canary 45 of 100), got %v", got)
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	update(h.spec(60, 40))
	edited := time.Now()
	h.waitFor("an edit after the API server returned", func() bool { return h.runtimeUpdates() == 4 })
	// client-go's watch backoff alone took up to 41 s here; the sidecar
	// reads the ConfigMap every second after a watch error.
	t.Logf("edit after the outage applied in %s", time.Since(edited))
	if d := time.Since(edited); d > 3*time.Second {
		t.Errorf("the edit made after the outage took %s to apply; want under 3 s", d)
	}
	if got := h.send(100, "FREE"); got["canary"] != 60 {
		t.Errorf("after the outage: want canary 60 of 100, got %v", got)
	}
}

// TestConfigMapSourcesAfterOutage: three sidecars' sources (the replicas of
// an HAProxy tier) across an API server restart all see an edit made after
// it within 2 s of the API answering: none waits for client-go's backoff.
func TestConfigMapSourcesAfterOutage(t *testing.T) {
	c := testcluster.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nsObj, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "replicas-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name
	cms := c.Client.CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "spec"}, Data: map[string]string{weights.DataKey: "v1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	type seen struct {
		mu   sync.Mutex
		data string
	}
	replicas := make([]*seen, 3)
	for i := range replicas {
		replicas[i] = &seen{}
		s := replicas[i]
		src := &source.ConfigMapSource{Client: c.Client, Namespace: ns, Name: "spec", Log: slog.New(slog.DiscardHandler)}
		go src.Run(ctx, func(u Update) { s.mu.Lock(); s.data = string(u.Data); s.mu.Unlock() })
	}
	all := func(want string) bool {
		for _, s := range replicas {
			s.mu.Lock()
			d := s.data
			s.mu.Unlock()
			if d != want {
				return false
			}
		}
		return true
	}
	waitAll := func(want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for !all(want) {
			if time.Since(start) > within {
				t.Fatalf("not every replica saw %q within %s", want, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitAll("v1", 15*time.Second)
	c.StopAPIServer()
	time.Sleep(3 * time.Second) // the watches fail and their backoff grows
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	cm, err := cms.Get(ctx, "spec", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[weights.DataKey] = "v2"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := waitAll("v2", 30*time.Second)
	t.Logf("every replica saw the post-outage edit %s after it", took)
	if took > 2*time.Second {
		t.Errorf("the replicas took %s to see an edit made after the outage; want within 2 s", took)
	}
}
