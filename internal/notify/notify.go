// Package notify delivers a message to a person: an incoming webhook of a
// chat (Slack and the ones that take its JSON) or an email over SMTP. It
// decides nothing about when to send; track-controller's Alerter does.
package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"os"
	"strings"
	"time"
)

// Message is one notification.
type Message struct {
	Subject, Text string
}

// Sender delivers messages to one destination.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Webhook posts {"text": ...}: what Slack, Mattermost, Rocket.Chat and
// Google Chat incoming webhooks take.
type Webhook struct {
	URL    string
	Client *http.Client // nil: a client with a 10 s timeout
}

// Send posts m's text.
func (w Webhook) Send(ctx context.Context, m Message) error {
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	body, _ := json.Marshal(map[string]string{"text": slackEscape.Replace(m.Text)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return redact(err, w.URL)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return redact(err, w.URL)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// Email sends over SMTP, with STARTTLS when the server offers it, and PLAIN
// auth with Username (which net/smtp only sends over TLS or to localhost).
type Email struct {
	Addr               string // host:port
	From               string
	To                 []string
	Username, Password string
	// CAFile, when set, is the PEM of the CAs the server's certificate is
	// checked against (a private CA); default the system's.
	CAFile string
}

// Send sends m as a plain-text email.
func (e Email) Send(ctx context.Context, m Message) error {
	host, _, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return fmt.Errorf("--alert-smtp-addr %q: %w", e.Addr, err)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		tc := &tls.Config{ServerName: host}
		if e.CAFile != "" {
			pem, err := os.ReadFile(e.CAFile)
			if err != nil {
				return err
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("%s: no PEM certificate", e.CAFile)
			}
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if e.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.Username, e.Password, host)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if err := c.Mail(e.From); err != nil {
		return err
	}
	for _, to := range e.To {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		e.From, strings.Join(e.To, ", "), headerSafe(m.Subject), time.Now().UTC().Format(time.RFC1123Z),
		strings.ReplaceAll(m.Text, "\n", "\r\n"))
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// headerSafe keeps a subject on one line.
func headerSafe(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// slackEscape is Slack's escaping of message text: <, > and & are its
// control characters (<!channel>, <@user>, <url|link>); text written by
// people (a reason, a Job's message) mentions nobody.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// redact is err without the webhook's URL, a secret (Slack's holds the
// token in its path): a *url.Error names it, which a log would keep.
func redact(err error, raw string) error {
	msg := err.Error()
	u, perr := url.Parse(raw)
	if perr != nil || u.Host == "" {
		return errors.New(strings.ReplaceAll(msg, raw, "(the webhook URL)"))
	}
	// The whole URL as given, then its path alone (as a *url.Error may
	// quote it escaped or trimmed).
	msg = strings.ReplaceAll(msg, raw, u.Scheme+"://"+u.Host+"/...")
	if len(u.Path) > 1 {
		msg = strings.ReplaceAll(msg, u.Path, "/...")
	}
	return errors.New(msg)
}
