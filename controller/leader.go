package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection says which Lease the replicas of the controller compete for.
type LeaderElection struct {
	Namespace, Name string // the Lease
	Identity        string // this replica; see Identity
	LeaseDuration   time.Duration
	RenewDeadline   time.Duration
	RetryPeriod     time.Duration
	// LockResult, when set, is told the outcome of every read and write of
	// the Lease (nil: it worked), so that a Lease that cannot be reached
	// shows in the readiness, a metric and the log, not only in klog.
	LockResult func(err error)
}

// ErrLeasePrecondition is a Lease that can never be taken as configured:
// its namespace missing, or no right to read or write it. Retrying does
// not help; the controller exits and says what to fix.
var ErrLeasePrecondition = errors.New("leader election cannot work")

// CheckLease makes sure the Lease can be read and written: a dry-run create
// (nothing is stored) fails when its namespace does not exist or the
// controller may not create it, and a get when it may not read it. Errors
// that may pass (the API unreachable) are returned unwrapped, to be logged
// and left to the election's retries.
func CheckLease(ctx context.Context, client kubernetes.Interface, le LeaderElection) error {
	leases := client.CoordinationV1().Leases(le.Namespace)
	where := fmt.Sprintf("the leader Lease %s/%s", le.Namespace, le.Name)
	_, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name}},
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %s: namespace %q does not exist: create it (kubectl create namespace %s; examples/install does), or pass --lease-namespace with an existing namespace, or --leader-elect=false for a single replica: %v",
			ErrLeasePrecondition, where, le.Namespace, le.Namespace, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: %s: no right to create it: grant create, get and update on leases (coordination.k8s.io) in namespace %s, as the Role in examples/install does: %v",
			ErrLeasePrecondition, where, le.Namespace, err)
	default:
		return err
	}
	if _, err := leases.Get(ctx, le.Name, metav1.GetOptions{}); apierrors.IsForbidden(err) {
		return fmt.Errorf("%w: %s: no right to read it: grant create, get and update on leases (coordination.k8s.io) in namespace %s, as the Role in examples/install does: %v",
			ErrLeasePrecondition, where, le.Namespace, err)
	}
	return nil
}

// recordingLock tells every outcome of the Lease's reads and writes.
type recordingLock struct {
	resourcelock.Interface
	result func(err error)
}

func (l *recordingLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	r, b, err := l.Interface.Get(ctx)
	if apierrors.IsNotFound(err) {
		l.result(nil) // no Lease yet: it is created next
	} else {
		l.result(err)
	}
	return r, b, err
}

func (l *recordingLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, ler)
	l.result(err)
	return err
}

func (l *recordingLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, ler)
	l.result(err)
	return err
}

// Identity is a replica's name in the Lease: the hostname and a random
// suffix, as kube-controller-manager does, since replicas can share a
// hostname (one host, hostNetwork pods, pod names cut to 63 characters).
func Identity(hostname string) string { return hostname + "_" + string(uuid.NewUUID()) }

// RunAsLeader runs run while this replica holds the Lease and returns when
// ctx ends or the lease is lost. run's context ends when the lease is lost;
// until then leading reports whether the lease is still surely held: false
// once it has not been renewed for a LeaseDuration (a replica that was
// paused, say), when another may already lead. Check it before each write.
func RunAsLeader(ctx context.Context, client kubernetes.Interface, le LeaderElection, log *slog.Logger, run func(ctx context.Context, leading func() bool)) error {
	if le.LeaseDuration == 0 {
		le.LeaseDuration, le.RenewDeadline, le.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	var rl resourcelock.Interface = lock
	if le.LockResult != nil {
		rl = &recordingLock{Interface: lock, result: le.LockResult}
	}
	acquired := make(chan context.Context, 1)
	var led atomic.Bool
	var elector *leaderelection.LeaderElector
	leading := func() bool { return elector.IsLeader() && elector.Check(0) == nil }
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            rl,
		ReleaseOnCancel: true,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			// client-go calls this in a goroutine of its own; run goes in
			// the caller's, so RunAsLeader returns only once run did.
			OnStartedLeading: func(ctx context.Context) { led.Store(true); acquired <- ctx },
			OnStoppedLeading: func() {
				if led.Load() { // client-go calls it at the end of every campaign
					log.Info("not the leader any more", "identity", le.Identity)
				}
			},
			OnNewLeader: func(id string) {
				if id != le.Identity {
					log.Info("following", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	finished := make(chan struct{})
	go func() { elector.Run(ctx); close(finished) }()
	select {
	case lctx := <-acquired:
		run(lctx, leading)
	case <-finished:
	}
	<-finished
	return nil
}
