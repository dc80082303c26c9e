package trackctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trackrouter/trackrouter/examples"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// kubeRun runs trackctl against the test cluster; ready, when set, runs
// between the command's read and its write.
func kubeRun(t *testing.T, c *testcluster.Cluster, ns string, beforeWrite func(), args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	e := &env{name: "trackctl", stdout: &out, stderr: &out, beforeWrite: beforeWrite}
	root := e.rootCommand()
	root.SetArgs(append(args, "--kubeconfig", c.Kubeconfig, "-n", ns))
	root.SetOut(&out)
	root.SetErr(&out)
	_, err := root.ExecuteC()
	switch {
	case err == nil:
		return ExitOK, out.String()
	case err == errProblems:
		return ExitProblem, out.String()
	default:
		return ExitUsage, out.String() + err.Error()
	}
}

// specNamespace makes a namespace holding the account-service example's
// spec ConfigMap and PodTemplate.
func specNamespace(t testing.TB, c *testcluster.Cluster, prefix string) string {
	t.Helper()
	ctx := context.Background()
	ns := fmt.Sprintf("%s-%d", prefix, fleetNS.Add(1))
	c.Namespace(t, ns)
	cm, tmpl, err := examples.AccountServiceObjects(ns)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PodTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

func specOf(t *testing.T, c *testcluster.Cluster, ns string) *weights.Spec {
	t.Helper()
	cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(context.Background(), "account-service", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := weights.ParseService(weights.Source{}, []byte(cm.Data[weights.DataKey]))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConcurrentSetWeight: two set-weight calls read the same version of
// the spec; one wins, the other gets a clear conflict error and changes
// nothing.
func TestConcurrentSetWeight(t *testing.T) {
	haproxytestBinary(t)
	c := testcluster.Get(t)
	ns := specNamespace(t, c, "conflict")
	var read sync.WaitGroup
	read.Add(2)
	both := func() { read.Done(); read.Wait() } // each writes once both have read
	type result struct {
		code int
		out  string
	}
	results := make(chan result, 2)
	for _, w := range []string{"canary=10", "canary=20"} {
		go func() {
			code, out := kubeRun(t, c, ns, both, "set-weight", "account-service", "canary", w, "production=90", "--reason", "test")
			results <- result{code, out}
		}()
	}
	r1, r2 := <-results, <-results
	if r1.code == ExitOK {
		r1, r2 = r2, r1
	}
	if r2.code != ExitOK || r1.code != ExitProblem || !strings.Contains(r1.out, "conflict: ConfigMap "+ns+"/account-service changed since it was read") || !strings.Contains(r1.out, "nothing was written") {
		t.Fatalf("want one success and one conflict:\nexit %d: %s\nexit %d: %s", r1.code, r1.out, r2.code, r2.out)
	}
	s := specOf(t, c, ns)
	won := "10"
	if strings.Contains(r2.out, "->20 ") {
		won = "20"
	}
	if fmt.Sprint(s.Backends["canary"]["canary"]) != won {
		t.Errorf("the spec has canary %d, the winner set %s", s.Backends["canary"]["canary"], won)
	}
	code, out := kubeRun(t, c, ns, nil, "history", "account-service", "-o", "json")
	var h []HistoryEntry
	if err := json.Unmarshal([]byte(out), &h); err != nil || code != ExitOK || len(h) != 1 {
		t.Errorf("history: exit %d, %v: want the winner only:\n%s", code, err, out)
	}
}

// TestReleaseWalkthrough: with track-controller running, a build goes
// through deploy and every promotion and ends on production with no
// leftover Deployment; rollback takes the canary out of traffic, a second
// rollback with --version puts the old version back; history lists every
// step with who made it, and each left an Event.
func TestReleaseWalkthrough(t *testing.T) {
	haproxytestBinary(t)
	c := testcluster.Get(t)
	ns := specNamespace(t, c, "release")
	r := &fleetRig{t: t, root: t, c: c, ns: ns, client: c.Client}
	r.startController()
	defer func() { r.stopCtrl() }()
	steps := [][]string{
		{"deploy", "account-service", "1.1.0", "--reason", "build 42"},
		{"promote", "account-service", "1.1.0"},
		{"promote", "account-service", "1.1.0"},
		{"promote", "account-service", "1.1.0", "--reason", "paid users are fine"},
	}
	stages := []string{"internal", "canary", "paid", "production"}
	replicas := map[string]int32{"internal": 2, "canary": 4, "paid": 4, "production": 10}
	for i, step := range steps {
		code, out := kubeRun(t, c, ns, nil, step...)
		if code != ExitOK || !strings.Contains(out, "tracks."+stages[i]+".version") || !strings.Contains(out, "recorded in its history") {
			t.Fatalf("%v: exit %d\n%s", step, code, out)
		}
		r.poll(stages[i]+" on 1.1.0", func() error { return r.ready("account-service-"+stages[i]+"-1.1.0", replicas[stages[i]]) })
	}
	r.poll("no leftover Deployment", func() error {
		deps, err := c.Client.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=account-service,tier=service"})
		if err != nil {
			return err
		}
		var names []string
		for _, d := range deps.Items {
			names = append(names, d.Name)
		}
		if len(names) != 4 {
			return fmt.Errorf("deployments %v", names)
		}
		for _, n := range names {
			if !strings.HasSuffix(n, "-1.1.0") {
				return fmt.Errorf("deployments %v", names)
			}
		}
		return nil
	})
	if code, out := kubeRun(t, c, ns, nil, "promote", "account-service", "1.1.0"); code != ExitProblem || !strings.Contains(out, "already runs on the last stage, production") {
		t.Errorf("a fifth promote: exit %d\n%s", code, out)
	}

	// Rollback: the canary out of traffic at once, then its old version back.
	if code, out := kubeRun(t, c, ns, nil, "rollback", "account-service", "canary", "--reason", "errors"); code != ExitOK || !strings.Contains(out, "canary: canary 5 (5.0%)->0 (0%)") {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	if s := specOf(t, c, ns); s.Backends["canary"]["canary"] != 0 {
		t.Errorf("after rollback: canary weight %d", s.Backends["canary"]["canary"])
	}
	if code, out := kubeRun(t, c, ns, nil, "rollback", "account-service", "canary", "--version", "1.0"); code != ExitOK || !strings.Contains(out, "tracks.canary.version 1.1.0->1.0") {
		t.Fatalf("rollback --version: exit %d\n%s", code, out)
	}
	r.poll("canary back on 1.0", func() error { return r.ready("account-service-canary-1.0", 4) })

	code, out := kubeRun(t, c, ns, nil, "history", "account-service", "-o", "json")
	var h []HistoryEntry
	if err := json.Unmarshal([]byte(out), &h); err != nil || code != ExitOK {
		t.Fatalf("history: exit %d, %v\n%s", code, err, out)
	}
	want := []string{"trackctl deploy 1.1.0", "trackctl promote 1.1.0", "trackctl promote 1.1.0", "trackctl promote 1.1.0", "trackctl rollback canary", "trackctl rollback canary --version 1.0"}
	slices.Reverse(want) // newest first
	if len(h) != len(want) {
		t.Fatalf("history has %d entries, want %d:\n%s", len(h), len(want), out)
	}
	for i, e := range h {
		if e.Command != want[i] || e.User == "" || strings.HasPrefix(e.User, "unknown") || len(e.Changes) == 0 || e.From == "" {
			t.Errorf("entry %d: %+v, want command %q with user, changes and resourceVersion", i, e, want[i])
		}
	}
	if first := h[len(h)-1]; first.Reason != "build 42" || first.Changes[0] != "tracks.internal.version 1.0.0->1.1.0" {
		t.Errorf("first entry: %+v", first)
	}
	_, table := kubeRun(t, c, ns, nil, "history", "account-service")
	if !strings.Contains(table, "trackctl rollback canary --version 1.0") || !strings.Contains(table, "backends.canary: canary 5 (5.0%)->0 (0%)") {
		t.Errorf("history table:\n%s", table)
	}
	events, err := c.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=SpecChanged"})
	if err != nil || len(events.Items) != len(want) {
		t.Errorf("SpecChanged Events: %d, %v; want %d", len(events.Items), err, len(want))
	}
}

func haproxytestBinary(t *testing.T) { haproxytest.Binary(t) }
