package alerts

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/testing/alerttest"
)

func svc(healthy bool, problems ...string) []*fleet.Health {
	return []*fleet.Health{{Namespace: "shop", Service: "web", Healthy: healthy, Problems: problems}}
}

// TestAlerterOncePerChange: a change is announced once, after it held for
// After; a flap shorter than After is not; the recovery is announced once;
// every message reaches the webhook and the SMTP server (STARTTLS, PLAIN
// auth).
func TestAlerterOncePerChange(t *testing.T) {
	hook := alerttest.NewWebhook(t)
	mail := alerttest.NewSMTP(t)
	a := New(Config{WebhookURL: hook.URL, SMTPAddr: mail.Addr, SMTPFrom: "tc@example.com", SMTPTo: []string{"ops@example.com", "dev@example.com"},
		SMTPUsername: "alerts", SMTPPassword: "secret", SMTPCAFile: mail.CAFile, After: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)

	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a.Observe(svc(true), t0)
	a.Observe(svc(false, "canary: 1 ready endpoint, want at least 2"), t0.Add(10*time.Second)) // a flap
	a.Observe(svc(true), t0.Add(20*time.Second))
	a.Observe(svc(false, "canary: 1 ready endpoint, want at least 2"), t0.Add(30*time.Second))
	a.Observe(svc(false, "canary: 1 ready endpoint, want at least 2"), t0.Add(60*time.Second))
	a.Observe(svc(false, "canary: 0 ready endpoints, want at least 2"), t0.Add(90*time.Second)) // held: announced
	a.Observe(svc(false, "canary: 0 ready endpoints, want at least 2"), t0.Add(5*time.Minute))  // no news
	a.Observe(svc(true), t0.Add(6*time.Minute))
	a.Observe(svc(true), t0.Add(8*time.Minute)) // recovered, held
	a.Observe(svc(true), t0.Add(9*time.Minute))

	waitFor(t, "2 webhook messages and 2 mails", func() bool { return len(hook.Texts()) >= 2 && len(mail.Mails()) >= 2 })
	time.Sleep(200 * time.Millisecond) // nothing more may come
	texts := hook.Texts()
	if len(texts) != 2 {
		t.Fatalf("webhook got %d messages, want 2: %q", len(texts), texts)
	}
	want0 := "shop/web is unhealthy since 2026-11-27T12:00:30Z:\n- canary: 0 ready endpoints, want at least 2\ntrackctl status web -n shop shows the details."
	if texts[0] != want0 {
		t.Errorf("first message:\n%s\nwant:\n%s", texts[0], want0)
	}
	want1 := "shop/web is healthy again since 2026-11-27T12:06:00Z (it was unhealthy since 2026-11-27T12:00:30Z, for 5m30s)."
	if texts[1] != want1 {
		t.Errorf("second message:\n%s\nwant:\n%s", texts[1], want1)
	}
	mails := mail.Mails()
	if len(mails) != 2 {
		t.Fatalf("SMTP got %d mails, want 2", len(mails))
	}
	m := mails[0]
	if !m.TLS || m.Username != "alerts" || m.From != "tc@example.com" || strings.Join(m.To, ",") != "ops@example.com,dev@example.com" ||
		!strings.Contains(m.Data, "Subject: [trackrouter] shop/web unhealthy: canary: 0 ready endpoints, want at least 2\r\n") ||
		!strings.Contains(m.Data, "- canary: 0 ready endpoints") {
		t.Errorf("mail: TLS %v, user %q, from %q, to %q:\n%s", m.TLS, m.Username, m.From, m.To, m.Data)
	}
	if n := testutil.ToFloat64(a.Sent.WithLabelValues("email")); n != 2 {
		t.Errorf("sent email = %v, want 2", n)
	}
}

// TestAlerterRetriesAndCounts: a refused delivery is counted and retried
// until the receiver takes it; Observe never waits for it.
func TestAlerterRetriesAndCounts(t *testing.T) {
	hook := alerttest.NewWebhook(t)
	hook.SetStatus(503)
	a := New(Config{WebhookURL: hook.URL, After: time.Nanosecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	// The receiver holds every POST unanswered: Observe returns all the
	// same (a health loop never waits for a slow receiver), while the
	// first delivery is still held there.
	release := hook.Hold()
	defer release()
	t0 := time.Now()
	a.Observe(svc(true), t0)
	observed := make(chan struct{})
	go func() {
		a.Observe(svc(false, "invalid spec: x"), t0.Add(time.Second))
		a.Observe(svc(false, "invalid spec: x"), t0.Add(2*time.Second))
		close(observed)
	}()
	waitFor(t, "the first delivery held at the receiver", func() bool { return hook.Arrived.Load() >= 1 })
	select {
	case <-observed:
	case <-time.After(10 * time.Second):
		t.Fatal("Observe waits for the delivery the receiver holds: it must not")
	}
	release()
	waitFor(t, "a failed attempt", func() bool { return testutil.ToFloat64(a.Failed.WithLabelValues("webhook")) >= 1 })
	hook.SetStatus(0)
	// The receiver keeps the text before it answers, the Alerter counts
	// the delivery after the answer: wait for the count, then check both.
	waitFor(t, "the retried message counted", func() bool { return testutil.ToFloat64(a.Sent.WithLabelValues("webhook")) >= 1 })
	if n, texts := testutil.ToFloat64(a.Sent.WithLabelValues("webhook")), len(hook.Texts()); n != 1 || texts != 1 {
		t.Errorf("sent = %v and %d messages received, want 1 and 1", n, texts)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAlertSecretNotLogged: a webhook whose delivery fails (no server at
// its address) is logged without its URL, whose path is a secret.
func TestAlertSecretNotLogged(t *testing.T) {
	const secret = "T000/B000/XXXXsecretXXXX"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the POST fails with a *url.Error
	var logs bytes.Buffer
	var mu sync.Mutex
	a := New(Config{WebhookURL: "http://" + addr + "/services/" + secret, After: time.Nanosecond},
		slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	t0 := time.Now()
	a.Observe(svc(true), t0)
	a.Observe(svc(false, "invalid spec: x"), t0.Add(time.Second))
	a.Observe(svc(false, "invalid spec: x"), t0.Add(2*time.Second))
	waitFor(t, "a failed attempt", func() bool { return testutil.ToFloat64(a.Failed.WithLabelValues("webhook")) >= 1 })
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "secret") || !strings.Contains(logs.String(), "alert delivery failed") {
		t.Errorf("the log of a failed delivery:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
