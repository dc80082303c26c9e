// Package report writes what the sidecar's HAProxy runs to the service's
// status ConfigMap, under the pod's name, where trackctl status and
// track-controller read it.
package report

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/internal/contract"
)

// StatusReporter writes what HAProxy runs to the service's status
// ConfigMap, under the pod's name, with Server-Side Apply: each pod owns
// its own key (field manager trackrouter-<pod>), so pods never conflict and
// the sidecar needs patch on that one object only. Reports are written in
// the background, the latest one wins, failures are retried with backoff
// (1 s doubling to 30 s). The report stays when the sidecar stops: HAProxy
// may run on (two containers), and what it ran is the last word; the
// controller removes the keys of pods that are gone.
type StatusReporter struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string // the status ConfigMap
	Pod       string
	Log       *slog.Logger
	// Failed counts failed writes; optional.
	Failed func()
	// Refresh is how often the last report is written again (a no-op for
	// the API when it is still there), so that a report deleted or
	// overwritten by hand, or a status ConfigMap created again, is
	// restored; default 1m.
	Refresh time.Duration
	// MinInterval is the least time between two writes of reports that
	// differ from the last one written only in which servers are down (the
	// latest waiting meanwhile): a server flapping between up and down, or
	// many at once, costs the API at most one write per interval per pod,
	// while a change of what HAProxy runs is written at once; default 1s.
	MinInterval time.Duration

	mu     sync.Mutex
	latest *contract.Report
	wake   chan struct{}
	once   sync.Once
}

func (s *StatusReporter) init() { s.once.Do(func() { s.wake = make(chan struct{}, 1) }) }

// Report queues r; it never blocks.
func (s *StatusReporter) Report(r *contract.Report) {
	s.init()
	r.Pod = s.Pod
	s.mu.Lock()
	s.latest = r
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *StatusReporter) manager() string { return "trackrouter-" + s.Pod }

// Run writes reports until ctx ends.
func (s *StatusReporter) Run(ctx context.Context) error {
	s.init()
	var (
		pending *contract.Report
		written *contract.Report // the last report written
		backoff time.Duration
		failing bool
	)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	every := s.Refresh
	if every <= 0 {
		every = time.Minute
	}
	refresh := time.NewTicker(every)
	defer refresh.Stop()
	gap := s.MinInterval
	if gap <= 0 {
		gap = time.Second
	}
	var lastWrite time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-retry.C:
		case <-refresh.C:
			if pending == nil && written != nil {
				pending = written
			}
		}
		s.mu.Lock()
		if s.latest != nil {
			pending, s.latest = s.latest, nil
		}
		s.mu.Unlock()
		if pending == nil {
			continue
		}
		if wait := gap - time.Since(lastWrite); wait > 0 && !failing && onlyDown(pending, written) {
			retry.Reset(wait) // the latest report then, whatever came meanwhile
			continue
		}
		lastWrite = time.Now()
		err := s.write(ctx, pending)
		if err == nil {
			if failing {
				s.Log.Info("status report written again", "configmap", s.Namespace+"/"+s.Name)
			}
			written, pending, backoff, failing = pending, nil, 0, false
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		if s.Failed != nil {
			s.Failed()
		}
		if !failing {
			s.Log.Warn("cannot write the status report; retrying", "configmap", s.Namespace+"/"+s.Name, "err", err)
		}
		failing = true
		backoff = min(max(2*backoff, time.Second), 30*time.Second)
		retry.Reset(backoff)
	}
}

// onlyDown reports whether r differs from the report written last only in
// which servers are down.
func onlyDown(r, written *contract.Report) bool {
	if written == nil {
		return false
	}
	a, b := *r, *written
	a.Down, b.Down = nil, nil
	return a.Same(&b)
}

func (s *StatusReporter) write(ctx context.Context, r *contract.Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ac := corev1ac.ConfigMap(s.Name, s.Namespace).WithData(map[string]string{s.Pod: string(b)})
	_, err = s.Client.CoreV1().ConfigMaps(s.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: s.manager(), Force: true})
	return err
}
