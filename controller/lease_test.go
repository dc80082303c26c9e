package controller

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
)

// TestLeaseNamespaceMissing: a controller whose Lease namespace does not
// exist exits at start with an error that names the flag and what to
// create, instead of converging nothing for ever.
func TestLeaseNamespaceMissing(t *testing.T) {
	c := testcluster.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Execute(ctx, Config{Kubeconfig: c.Kubeconfig, Namespace: "ctrl-none", RouterImage: "x", Workers: 1,
		LeaderElect: true, LeaseNamespace: "no-such-namespace", LeaseName: "track-controller"}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, ErrLeasePrecondition) || ctx.Err() != nil {
		t.Fatalf("want the precondition error before the deadline, got %v", err)
	}
	for _, want := range []string{`namespace "no-such-namespace" does not exist`, "kubectl create namespace no-such-namespace", "--lease-namespace", "--leader-elect=false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
}

// TestLeaseForbidden: without the right to create or read Leases, the
// check says which rights to grant; with them it passes.
func TestLeaseForbidden(t *testing.T) {
	c := testcluster.Get(t)
	_, ns, _ := setup(t)
	rc := rest.CopyConfig(c.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":nobody"}
	nobody, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	le := LeaderElection{Namespace: ns, Name: "track-controller"}
	err = CheckLease(context.Background(), nobody, le)
	if !errors.Is(err, ErrLeasePrecondition) || !strings.Contains(err.Error(), "grant create, get and update on leases (coordination.k8s.io) in namespace "+ns) {
		t.Errorf("without rights: %v", err)
	}
	if err := CheckLease(context.Background(), c.Client, le); err != nil {
		t.Errorf("with rights: %v", err)
	}
	if _, err := c.Client.CoordinationV1().Leases(ns).Get(context.Background(), le.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the check's dry-run create stored a Lease: %v", err)
	}
}

// TestLeaseLostNamespaceNotReady: a Lease namespace that goes away while the
// controller runs shows in the election's results: the controller's own
// log once, the metric, and the readiness, until the Lease works again.
func TestLeaseLostNamespaceNotReady(t *testing.T) {
	c := testcluster.Get(t)
	var (
		mu      sync.Mutex
		results []error
	)
	le := LeaderElection{Namespace: "gone-namespace", Name: "track-controller", Identity: "a",
		LeaseDuration: time.Second, RenewDeadline: 800 * time.Millisecond, RetryPeriod: 100 * time.Millisecond,
		LockResult: func(err error) { mu.Lock(); results = append(results, err); mu.Unlock() }}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	RunAsLeader(ctx, c.Client, le, slog.New(slog.DiscardHandler), func(context.Context, func() bool) { t.Error("led without a Lease") })
	mu.Lock()
	defer mu.Unlock()
	// The last one may be the deadline of the test's context, cutting a
	// request short: any NotFound told is the point.
	told := false
	for _, err := range results {
		told = told || apierrors.IsNotFound(err)
	}
	if !told {
		t.Fatalf("want the election's NotFound told, got %v", results)
	}

	// What the controller does with them.
	logs := &haproxytest.SyncBuffer{}
	var l leaseState
	record := l.recorder(Config{LeaseNamespace: "gone-namespace", LeaseName: "track-controller"}, slog.New(slog.NewTextHandler(logs, nil)))
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "gone-namespace")
	record(nil)
	record(notFound)
	record(notFound)
	if err := l.err(); err == nil || !strings.Contains(err.Error(), "the leader Lease cannot be read or written") {
		t.Errorf("readiness with the Lease failing: %v", err)
	}
	if n := testutil.ToFloat64(l.errors); n != 2 {
		t.Errorf("trackcontroller_lease_errors_total: %v, want 2", n)
	}
	if n := strings.Count(logs.String(), "cannot read or write the leader Lease; namespace gone-namespace missing? create it, or pass --lease-namespace"); n != 1 {
		t.Errorf("want the failure logged once with what to do, got %d times:\n%s", n, logs.String())
	}
	record(nil)
	if err := l.err(); err != nil || !strings.Contains(logs.String(), "the leader Lease can be reached again") {
		t.Errorf("after the Lease works again: readiness %v, log:\n%s", err, logs.String())
	}
}
