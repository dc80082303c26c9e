package controller

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection says which Lease the replicas of the controller compete for.
type LeaderElection struct {
	Namespace, Name string // the Lease
	Identity        string // this replica, e.g. the pod name
	LeaseDuration   time.Duration
	RenewDeadline   time.Duration
	RetryPeriod     time.Duration
}

// RunAsLeader runs run while this replica holds the Lease, and returns when
// ctx ends or the lease is lost (the process should then exit, so that it
// starts again as a follower with fresh caches).
func RunAsLeader(ctx context.Context, client kubernetes.Interface, le LeaderElection, log *slog.Logger, run func(ctx context.Context)) {
	if le.LeaseDuration == 0 {
		le.LeaseDuration, le.RenewDeadline, le.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		ReleaseOnCancel: true,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: run,
			OnStoppedLeading: func() { log.Info("not the leader any more", "identity", le.Identity) },
			OnNewLeader: func(id string) {
				if id != le.Identity {
					log.Info("following", "leader", id)
				}
			},
		},
	})
}
