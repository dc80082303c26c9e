// Package alerttest receives health alerts in tests: a webhook receiver and
// a real SMTP server (github.com/emersion/go-smtp) on loopback, with
// STARTTLS and PLAIN auth.
package alerttest

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Webhook collects the "text" of every POST.
type Webhook struct {
	URL    string
	mu     sync.Mutex
	texts  []string
	Status int // answer with this status; 0 is 200
	// held, while set, makes every POST wait until it is closed.
	held chan struct{}
	// Arrived counts the POSTs received, answered or not.
	Arrived atomic.Int64
}

// NewWebhook starts a receiver that stops with the test.
func NewWebhook(tb testing.TB) *Webhook {
	w := &Webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.Arrived.Add(1)
		w.mu.Lock()
		held := w.held
		w.mu.Unlock()
		if held != nil {
			select {
			case <-held:
			case <-r.Context().Done():
				return
			}
		}
		var body struct{ Text string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Method != http.MethodPost {
			http.Error(rw, "want a JSON POST", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		status := w.Status
		if status == 0 || status/100 == 2 {
			w.texts = append(w.texts, body.Text)
		}
		w.mu.Unlock()
		if status != 0 {
			rw.WriteHeader(status)
		}
	}))
	tb.Cleanup(srv.Close)
	w.URL = srv.URL
	return w
}

// Texts returns what was received so far.
func (w *Webhook) Texts() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.texts...)
}

// Hold makes every POST wait, unanswered, until the returned release is
// called.
func (w *Webhook) Hold() (release func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	w.held = ch
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			w.held = nil
			w.mu.Unlock()
			close(ch)
		})
	}
}

// SetStatus makes the receiver answer status (and drop the message) from
// now on, or accept again with 0.
func (w *Webhook) SetStatus(status int) {
	w.mu.Lock()
	w.Status = status
	w.mu.Unlock()
}

// Mail is one message the SMTP server accepted.
type Mail struct {
	From     string
	To       []string
	Data     string
	TLS      bool   // the session was upgraded with STARTTLS
	Username string // the PLAIN auth user, "" without auth
}

// SMTP is an SMTP server on loopback that offers STARTTLS and PLAIN auth
// (user alerts, password secret).
type SMTP struct {
	Addr   string
	CAFile string // PEM of the certificate it presents, for the client
	mu     sync.Mutex
	mails  []Mail
}

// NewSMTP starts a server that stops with the test.
func NewSMTP(tb testing.TB) *SMTP {
	s := &SMTP{}
	// httptest's certificate is valid for 127.0.0.1.
	certSrv := httptest.NewTLSServer(http.NotFoundHandler())
	certSrv.Close()
	cert := certSrv.TLS.Certificates[0]
	s.CAFile = filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(s.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		tb.Fatal(err)
	}
	srv := smtp.NewServer(backend{s})
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.AllowInsecureAuth = false
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return s
}

// Mails returns what was received so far.
func (s *SMTP) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

type backend struct{ s *SMTP }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s    *SMTP
	conn *smtp.Conn
	mail Mail
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != "alerts" || password != "secret" {
			return errors.New("invalid credentials")
		}
		s.mail.Username = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.mail.From = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mail.To = append(s.mail.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, s.mail.TLS = s.conn.TLSConnectionState()
	s.mail.Data = string(b)
	s.s.mu.Lock()
	s.s.mails = append(s.s.mails, s.mail)
	s.s.mu.Unlock()
	s.mail = Mail{Username: s.mail.Username}
	return nil
}

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }
