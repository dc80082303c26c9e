// Package alerts is track-controller's alerting: health evaluations turned
// into one message per change of a service (held for a while, so that a
// flap does not page), and a release's rollbacks and stops, delivered in
// the background to a webhook and by email.
package alerts

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/notify"
)

// Config says where health changes are sent. Empty destinations are
// off; with none, nothing is sent.
type Config struct {
	// WebhookURL receives a Slack-compatible JSON POST {"text": ...}.
	WebhookURL string
	// SMTP: the server (host:port), the sender and the recipients. STARTTLS
	// is used when the server offers it; with Username, PLAIN auth (which
	// net/smtp only sends over TLS or to localhost).
	SMTPAddr     string
	SMTPFrom     string
	SMTPTo       []string
	SMTPUsername string
	SMTPPassword string
	// SMTPCAFile, when set, is the PEM of the CAs the SMTP server's
	// certificate is checked against (a private CA); default the system's.
	SMTPCAFile string
	// After is how long a health state must hold before it is announced
	// (a flapping endpoint does not page); default 1m.
	After time.Duration
	// Retry bounds the delivery of one message: retried with backoff (1 s
	// doubling to 1 min) until it is delivered or Retry has passed;
	// default 10m.
	Retry time.Duration
}

func (a Config) enabled() bool { return a.WebhookURL != "" || a.SMTPAddr != "" }

// Alerter turns health evaluations into messages, one per change of a
// service between healthy and unhealthy (held for After), and delivers them
// in the background: Observe never blocks reconciliation.
type Alerter struct {
	cfg     Config
	log     *slog.Logger
	senders map[string]notify.Sender // by destination: webhook, email

	// Sent and Failed count deliveries and failed attempts, by destination
	// (webhook, email); Dropped, messages lost to a full queue.
	Sent, Failed *prometheus.CounterVec
	Dropped      atomic.Int64

	mu     sync.Mutex
	states map[string]*alertState // by namespace/service
	queue  chan alert
}

// alertState is what was announced for a service, and what is pending.
type alertState struct {
	announcedHealthy bool
	since            time.Time // when the announced state began
	pending          *bool     // a state seen but not held long enough yet
	pendingSince     time.Time
}

// alert is one message.
type alert = notify.Message

// New makes an Alerter; Run delivers its messages.
func New(cfg Config, log *slog.Logger) *Alerter {
	if cfg.After == 0 {
		cfg.After = time.Minute
	}
	if cfg.Retry == 0 {
		cfg.Retry = 10 * time.Minute
	}
	a := &Alerter{cfg: cfg, log: log, senders: make(map[string]notify.Sender),
		states: make(map[string]*alertState), queue: make(chan alert, 256),
		Sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackcontroller_alerts_sent_total",
			Help: "Health alerts delivered, by destination (webhook, email)."}, []string{"destination"}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackcontroller_alert_failures_total",
			Help: "Failed attempts to deliver a health alert, by destination; each is retried with backoff."}, []string{"destination"}),
	}
	for _, d := range []string{"webhook", "email"} {
		a.Sent.WithLabelValues(d)
		a.Failed.WithLabelValues(d)
	}
	if cfg.WebhookURL != "" {
		a.senders["webhook"] = notify.Webhook{URL: cfg.WebhookURL}
	}
	if cfg.SMTPAddr != "" {
		a.senders["email"] = notify.Email{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, To: cfg.SMTPTo,
			Username: cfg.SMTPUsername, Password: cfg.SMTPPassword, CAFile: cfg.SMTPCAFile}
	}
	return a
}

// Observe takes one evaluation of every service at now. A service seen for
// the first time is taken as announced healthy, so one that starts
// unhealthy is announced once it held.
func (a *Alerter) Observe(hs []*fleet.Health, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(hs))
	for _, h := range hs {
		key := h.Namespace + "/" + h.Service
		seen[key] = true
		st := a.states[key]
		if st == nil {
			st = &alertState{announcedHealthy: true, since: now}
			a.states[key] = st
		}
		if h.Healthy == st.announcedHealthy {
			st.pending = nil
			continue
		}
		if st.pending == nil {
			healthy := h.Healthy
			st.pending, st.pendingSince = &healthy, now
		}
		if now.Sub(st.pendingSince) < a.cfg.After {
			continue
		}
		was := st.since
		st.announcedHealthy, st.since, st.pending = h.Healthy, st.pendingSince, nil
		a.enqueue(message(h, st.since, was))
	}
	for key := range a.states {
		if !seen[key] {
			delete(a.states, key) // the spec is gone: nothing to watch
		}
	}
}

// Send queues a message (a release's rollback, say) for delivery; it never
// blocks: a full queue drops it, counted in Dropped.
func (a *Alerter) Send(subject, text string) { a.enqueue(alert{Subject: subject, Text: text}) }

func (a *Alerter) enqueue(m alert) {
	if !a.cfg.enabled() {
		a.log.Info("health changed (no alert destination configured)", "subject", m.Subject)
		return
	}
	select {
	case a.queue <- m:
	default:
		a.Dropped.Add(1)
		a.log.Error("alert queue full: message dropped", "subject", m.Subject)
	}
}

// message says what is wrong and since when, or that it recovered.
func message(h *fleet.Health, since, was time.Time) alert {
	name := h.Namespace + "/" + h.Service
	if h.Healthy {
		return alert{
			Subject: fmt.Sprintf("[trackrouter] %s recovered", name),
			Text: fmt.Sprintf("%s is healthy again since %s (it was unhealthy since %s, for %s).",
				name, since.UTC().Format(time.RFC3339), was.UTC().Format(time.RFC3339), since.Sub(was).Round(time.Second)),
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s is unhealthy since %s:\n", name, since.UTC().Format(time.RFC3339))
	problems := append([]string(nil), h.Problems...)
	sort.Strings(problems)
	for _, p := range problems {
		fmt.Fprintf(&b, "- %s\n", p)
	}
	fmt.Fprintf(&b, "trackctl status %s -n %s shows the details.", h.Service, h.Namespace)
	return alert{Subject: fmt.Sprintf("[trackrouter] %s unhealthy: %s", name, firstProblem(problems)), Text: b.String()}
}

func firstProblem(ps []string) string {
	if len(ps) == 0 {
		return "unknown"
	}
	if len(ps) > 1 {
		return fmt.Sprintf("%s (and %d more)", ps[0], len(ps)-1)
	}
	return ps[0]
}

// Run delivers messages until ctx ends.
func (a *Alerter) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-a.queue:
			var wg sync.WaitGroup
			for dest, sender := range a.senders {
				wg.Add(1)
				go func() { defer wg.Done(); a.deliver(ctx, dest, m, sender) }()
			}
			wg.Wait()
		}
	}
}

// deliver sends m with send, retrying with backoff until cfg.Retry passed.
func (a *Alerter) deliver(ctx context.Context, dest string, m alert, sender notify.Sender) {
	deadline := time.Now().Add(a.cfg.Retry)
	backoff := time.Second
	for {
		err := sender.Send(ctx, m)
		if err == nil {
			a.Sent.WithLabelValues(dest).Inc()
			return
		}
		a.Failed.WithLabelValues(dest).Inc()
		if time.Now().Add(backoff).After(deadline) || ctx.Err() != nil {
			a.log.Error("alert not delivered; giving up", "destination", dest, "subject", m.Subject, "err", err)
			return
		}
		a.log.Warn("alert delivery failed; retrying", "destination", dest, "retry_in", backoff.String(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
}
