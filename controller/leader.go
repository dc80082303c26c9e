package controller

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

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
	acquired := make(chan context.Context, 1)
	var led atomic.Bool
	var elector *leaderelection.LeaderElector
	leading := func() bool { return elector.IsLeader() && elector.Check(0) == nil }
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
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
