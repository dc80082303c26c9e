package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trackrouter/trackrouter/controller/releases"
	"github.com/trackrouter/trackrouter/controller/webhook"
	"github.com/trackrouter/trackrouter/internal/board"
	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/health"
	"github.com/trackrouter/trackrouter/internal/kube"
)

// Config is track-controller's command line.
type Config struct {
	Kubeconfig     string // empty: $KUBECONFIG, ~/.kube/config, else in-cluster
	Context        string // kubeconfig context; empty: the current one
	Namespace      string // empty: all namespaces
	RouterImage    string
	Workers        int
	MetricsAddr    string
	LeaderElect    bool
	LeaseNamespace string
	LeaseName      string
	QPS            float32 // client-side rate limit of API requests
	Burst          int
	// Health checks and alerts: see Options and AlertConfig.
	HealthInterval time.Duration
	MinEndpoints   int
	Alerts         AlertConfig
	// Webhook: the admission webhook, on every replica (Addr empty: none).
	Webhook webhook.Config
	// BoardAddr, when set, serves the board (trackctl board's pages),
	// read-only, on every replica: for a team screen.
	BoardAddr string
	// SamplesURL: see Options (no flag: for tests whose pods are kwok's).
	SamplesURL func(*corev1.Pod) (string, error)
}

// Execute runs track-controller until ctx ends. With leader election it
// campaigns again after losing the lease (an API outage, a pause), with
// fresh caches, instead of exiting.
func Execute(ctx context.Context, cfg Config, log *slog.Logger) error {
	client, apiRequests, err := newClient(cfg)
	if err != nil {
		return err
	}
	if cfg.RouterImage == "" {
		if cfg.RouterImage, err = OwnImage(ctx, client, os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")); err != nil {
			return err
		}
		log.Info("HAProxy tier image: the controller's own", "image", cfg.RouterImage)
	}
	p := &process{cfg: cfg, log: log, client: client, apiRequests: apiRequests, serveErr: make(chan error, 1)}
	var le LeaderElection
	if cfg.LeaderElect {
		if le, err = p.election(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One Alerter for the process: what it announced survives a lost and
	// regained lease.
	p.alerter = NewAlerter(cfg.Alerts, log)
	go p.alerter.Run(ctx)
	p.serve(ctx, cancel)
	var runErr error
	if !cfg.LeaderElect {
		runErr = p.term(ctx, nil)
	} else {
		log.Info("campaigning for the leader lease", "identity", le.Identity, "lease", le.Namespace+"/"+le.Name)
		for ctx.Err() == nil && runErr == nil {
			err := RunAsLeader(ctx, client, le, log, func(ctx context.Context, leading func() bool) {
				runErr = p.term(ctx, leading)
			})
			if err != nil {
				return err
			}
			if ctx.Err() == nil && runErr == nil {
				log.Warn("lost the leader lease; campaigning again")
			}
		}
	}
	select {
	case err := <-p.serveErr:
		if err != nil {
			return err
		}
	default:
	}
	return runErr
}

// newClient is the API client of cfg, its requests counted by verb and
// resource (the Lease's renewals included: the fleet benchmark reads it).
func newClient(cfg Config) (kubernetes.Interface, *prometheus.CounterVec, error) {
	rc, err := kube.Config(cfg.Kubeconfig, cfg.Context)
	if err != nil {
		return nil, nil, err
	}
	kube.SetRate(rc, cfg.QPS, cfg.Burst)
	apiRequests := newAPIRequests()
	kube.CountRequests(rc, func(verb, resource string) { apiRequests.WithLabelValues(verb, resource).Inc() })
	// Deployment names carry versions with dots; say so once, not per write.
	rc.WarningHandler = rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true})
	client, err := kubernetes.NewForConfig(rc)
	return client, apiRequests, err
}

// process is one track-controller process: its servers (metrics, board,
// webhook) live as long as it does; a term (one controller with its own
// informers) lasts as long as a lease is held.
type process struct {
	cfg         Config
	log         *slog.Logger
	client      kubernetes.Interface
	apiRequests *prometheus.CounterVec
	alerter     *Alerter
	wh          *webhook.Server
	serveErr    chan error

	leading atomic.Bool
	current atomic.Pointer[Controller]
	base    counters // of the terms before the current one
	lease   leaseState
}

// election is the leader election of the process's config. A Lease that
// can never be taken is said at once, and the process exits: it would
// otherwise converge nothing, for ever.
func (p *process) election(ctx context.Context) (LeaderElection, error) {
	host, err := os.Hostname()
	if err != nil {
		return LeaderElection{}, err
	}
	le := LeaderElection{Namespace: p.cfg.LeaseNamespace, Name: p.cfg.LeaseName, Identity: Identity(host), LockResult: p.lease.recorder(p.cfg, p.log)}
	if err := CheckLease(ctx, p.client, le); errors.Is(err, ErrLeasePrecondition) {
		return le, err
	} else if err != nil {
		p.log.Warn("cannot check the leader Lease yet; the election retries", "lease", le.Namespace+"/"+le.Name, "err", err)
	}
	return le, nil
}

// serve starts the process's servers; one that stops ends the process
// (cancel): without its probes, or its webhook, a replica must not run on.
func (p *process) serve(ctx context.Context, cancel func()) {
	fail := func(err error) {
		if err != nil {
			p.serveErr <- err
			cancel()
		}
	}
	if p.cfg.MetricsAddr != "" {
		go func() {
			ready := func() error {
				if err := p.lease.err(); err != nil {
					return err
				}
				if c := p.current.Load(); c != nil {
					return c.notReady(p.leading.Load())
				}
				return nil
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(metricCollectors(&p.current, &p.base, &p.leading, p.alerter, p.apiRequests, p.lease.errors)...)
			p.serveErr <- health.Serve(ctx, p.cfg.MetricsAddr, reg, ready, p.log)
			cancel()
		}()
	}
	if p.cfg.BoardAddr != "" {
		go func() { fail(serveBoard(ctx, p.client, p.cfg, p.log)) }()
	}
	if p.cfg.Webhook.Addr != "" {
		p.wh = webhook.New(p.cfg.Webhook, p.client, p.log)
		go func() { fail(p.wh.Serve(ctx)) }()
	}
}

// term runs one controller, with its own informers, until ctx ends.
func (p *process) term(ctx context.Context, isLeading func() bool) error {
	if p.wh != nil {
		// Only the leader makes and rotates the certificate.
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			if isLeading != nil && !isLeading() {
				return
			}
			if err := p.wh.Keep(ctx, time.Now()); err != nil && ctx.Err() == nil {
				p.log.Error("webhook: cannot keep its certificate", "err", err)
			}
		}, p.wh.Refresh())
	}
	cfg := p.cfg
	factories := NewFactories(p.client, cfg.Namespace, 0)
	ctrl := New(p.client, factories.Informers(), Options{RouterImage: cfg.RouterImage, Log: p.log, Leading: isLeading, SamplesURL: cfg.SamplesURL,
		HealthInterval: cfg.HealthInterval, MinEndpoints: cfg.MinEndpoints, Alerter: p.alerter})
	p.current.Store(ctrl)
	p.leading.Store(true)
	defer func() {
		p.leading.Store(false)
		p.base.writes.Add(ctrl.Writes.Load())
		p.base.syncs.Add(ctrl.Syncs.Load())
		p.base.applyErrors.Add(ctrl.ApplyErrors.Load())
		p.base.stuck.Add(ctrl.StuckSwitches.Load())
		p.current.Store(nil)
	}()
	factories.Start(ctx.Done())
	defer factories.Shutdown()
	return ctrl.Run(ctx, cfg.Workers)
}

// leaseState is whether the leader Lease could be read and written lately.
type leaseState struct {
	mu     sync.Mutex
	last   error // of the last read or write; nil when it worked
	errors prometheus.Counter
}

// recorder returns the LockResult of the election: it keeps the last
// outcome for the readiness, counts failures, and logs each new one in the
// controller's own log, with what to do.
func (l *leaseState) recorder(cfg Config, log *slog.Logger) func(error) {
	l.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "trackcontroller_lease_errors_total",
		Help: "Failed reads and writes of the leader Lease (--lease-namespace, --lease-name); /readyz fails until one works."})
	where := cfg.LeaseNamespace + "/" + cfg.LeaseName
	return func(err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		switch {
		case err == nil && l.last != nil:
			log.Info("the leader Lease can be reached again", "lease", where)
		case err != nil:
			l.errors.Inc()
			if l.last == nil || l.last.Error() != err.Error() {
				hint := "the election retries; not leading until it works"
				if apierrors.IsNotFound(err) {
					hint = "namespace " + cfg.LeaseNamespace + " missing? create it, or pass --lease-namespace with an existing one"
				} else if apierrors.IsForbidden(err) {
					hint = "grant create, get and update on leases in namespace " + cfg.LeaseNamespace + " (examples/install)"
				}
				log.Error("cannot read or write the leader Lease; "+hint, "lease", where, "err", err)
			}
		}
		l.last = err
	}
}

// err says why the Lease cannot be used, or nil.
func (l *leaseState) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		return nil
	}
	return fmt.Errorf("the leader Lease cannot be read or written: %w", l.last)
}

// counters are the totals of a controller's terms.
type counters struct{ writes, syncs, applyErrors, stuck atomic.Int64 }

// newAPIRequests counts the requests to the API server.
func newAPIRequests() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackcontroller_api_requests_total",
		Help: "Requests sent to the API server, by verb (GET, LIST, WATCH, POST, PUT, PATCH, DELETE) and resource, the Lease's included."},
		[]string{"verb", "resource"})
}

// metricCollectors are the controller's metrics, summed over its terms
// (docs/metrics.md is made from them).
func metricCollectors(current *atomic.Pointer[Controller], base *counters, leading *atomic.Bool, alerter *Alerter, apiRequests, leaseErrors prometheus.Collector) []prometheus.Collector {
	total := func(base *atomic.Int64, now func(c *Controller) int64) func() float64 {
		return func() float64 {
			n := base.Load()
			if c := current.Load(); c != nil {
				n += now(c)
			}
			return float64(n)
		}
	}
	cs := []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trackcontroller_writes_total", Help: "Creates, updates and deletes of owned objects."},
			total(&base.writes, func(c *Controller) int64 { return c.Writes.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trackcontroller_syncs_total", Help: "Finished syncs of service specs."},
			total(&base.syncs, func(c *Controller) int64 { return c.Syncs.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trackcontroller_apply_errors_total", Help: "Objects the API refused to write (each also a Warning Event ApplyFailed on the spec)."},
			total(&base.applyErrors, func(c *Controller) int64 { return c.ApplyErrors.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "trackcontroller_stuck_switches_total", Help: "Warning Events SwitchStuck: a new track version past its progress deadline without becoming Available (said again every 50 min while it stays so)."},
			total(&base.stuck, func(c *Controller) int64 { return c.StuckSwitches.Load() })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trackcontroller_leader", Help: "1 while this replica is the leader."},
			func() float64 {
				if leading.Load() {
					return 1
				}
				return 0
			}),
		alerter.Sent, alerter.Failed, healthCollector{current: current.Load}, releases.Collector(func() *releases.Loop { return current.Load().releaseLoop() }), apiRequests}
	if leaseErrors != nil {
		cs = append(cs, leaseErrors)
	}
	return cs
}

// notReady: a leader is ready once its caches synced; a follower is ready.
func (c *Controller) notReady(leading bool) error {
	for _, synced := range c.synced {
		if leading && !synced() {
			return errors.New("caches not synced")
		}
	}
	return nil
}

// OwnImage is the image of the controller's own container, read from its Pod
// (namespace and name from the downward API): the default of --router-image,
// so that whatever rewrites the controller's image (kustomize images:, a Helm
// value, a mirror) rewrites the HAProxy tier's too.
func OwnImage(ctx context.Context, client kubernetes.Interface, namespace, name string) (string, error) {
	if namespace == "" || name == "" {
		return "", errors.New("--router-image is required outside a Pod: the image with haproxy and trackrouter for the HAProxy tier (in a Pod, set POD_NAMESPACE and POD_NAME from the downward API and the controller's own image is used)")
	}
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read the controller's own Pod %s/%s for its image (pass --router-image, or grant get on pods in %s): %w", namespace, name, namespace, err)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == ownContainer {
			return c.Image, nil
		}
	}
	if len(pod.Spec.Containers) == 1 {
		return pod.Spec.Containers[0].Image, nil
	}
	return "", fmt.Errorf("Pod %s/%s has no container named %s to take the image from: pass --router-image", namespace, name, ownContainer)
}

// ownContainer is the controller's container name in examples/install.
const ownContainer = "track-controller"

// serveBoard serves the board on cfg.BoardAddr until ctx ends.
func serveBoard(ctx context.Context, client kubernetes.Interface, cfg Config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.BoardAddr)
	if err != nil {
		return fmt.Errorf("board on %s: %w", cfg.BoardAddr, err)
	}
	b := board.New(client, cfg.Namespace, fleet.Options{MinEndpoints: cfg.MinEndpoints})
	// In the cluster, the sidecars' samples answer at their pod addresses,
	// as the pipeline reads them: no API request.
	b.Plot(board.DirectFetcher(&http.Client{Timeout: 3 * time.Second}), 5*time.Second)
	if err := b.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	log.Info("serving the board (read-only)", "addr", ln.Addr().String())
	return b.Serve(ctx, ln)
}
