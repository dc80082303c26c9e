// Command track-controller turns trackrouter service specs into track
// Deployments, track Services and the HAProxy tier. Run with --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/trackrouter/trackrouter/controller"
	"github.com/trackrouter/trackrouter/internal/kube"
	"github.com/trackrouter/trackrouter/internal/version"
)

func main() {
	var cfg controller.Config
	fs := pflag.NewFlagSet("track-controller", pflag.ExitOnError)
	kube.Flags{Kubeconfig: &cfg.Kubeconfig, Context: &cfg.Context, QPS: &cfg.QPS, Burst: &cfg.Burst}.AddTo(fs, "")
	fs.StringVarP(&cfg.Namespace, "namespace", "n", "", "watch only this namespace (default: all)")
	fs.StringVar(&cfg.RouterImage, "router-image", "", "image of the HAProxy tier, with haproxy and trackrouter (default: the controller's own image, read from its Pod named by $POD_NAMESPACE and $POD_NAME)")
	fs.IntVar(&cfg.Workers, "workers", 8, "specs synced in parallel (each sync waits on the API server for every object it writes: 2 took 4.5 min to write 300 services; see docs/controller.md)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":9102", "serve /metrics, /healthz and /readyz here; empty disables")
	fs.BoolVar(&cfg.LeaderElect, "leader-elect", true, "run several replicas; only the holder of the Lease writes")
	fs.StringVar(&cfg.LeaseNamespace, "lease-namespace", "trackrouter-system", "namespace of the leader Lease")
	fs.StringVar(&cfg.LeaseName, "lease-name", "track-controller", "name of the leader Lease")
	fs.DurationVar(&cfg.HealthInterval, "health-interval", 10*time.Second, "how often every service's health is evaluated, for the metrics and alerts")
	fs.IntVar(&cfg.MinEndpoints, "min-endpoints", 2, "ready endpoints each track needs to be healthy (a track whose spec asks for fewer replicas needs that many)")
	fs.DurationVar(&cfg.Alerts.After, "alert-after", time.Minute, "how long a health change must hold before it is announced")
	fs.StringVar(&cfg.Alerts.WebhookURL, "alert-webhook-url", "", "Slack-compatible incoming webhook for health alerts (better: the file webhook-url in --alert-secret-dir)")
	fs.StringVar(&cfg.Alerts.SMTPAddr, "alert-smtp-addr", "", "SMTP server host:port for health alerts by email (STARTTLS when offered)")
	fs.StringVar(&cfg.Alerts.SMTPFrom, "alert-smtp-from", "", "sender address of alert emails")
	fs.StringSliceVar(&cfg.Alerts.SMTPTo, "alert-smtp-to", nil, "recipients of alert emails (comma-separated)")
	fs.StringVar(&cfg.Alerts.SMTPUsername, "alert-smtp-username", "", "SMTP user (PLAIN auth, over TLS only); the password is the file smtp-password in --alert-secret-dir")
	fs.StringVar(&cfg.Alerts.SMTPCAFile, "alert-smtp-ca-file", "", "PEM file of the CAs the SMTP server's certificate is checked against (default: the system's)")
	fs.StringVar(&cfg.BoardAddr, "board-addr", "", "serve the board (what trackctl board shows), read-only, here on every replica, e.g. 127.0.0.1:8089 for kubectl port-forward; it shows every spec and its history to whoever reaches it; empty disables")
	fs.StringVar(&cfg.Webhook.Addr, "webhook-addr", "", "serve the admission webhook (specs refused at kubectl apply) here, e.g. :9443; empty disables")
	fs.StringVar(&cfg.Webhook.Secret, "webhook-secret", "trackrouter-system/track-controller-webhook", "NAMESPACE/NAME of the Secret that holds the webhook's own CA and serving certificate (the leader makes and rotates them)")
	fs.StringVar(&cfg.Webhook.Configuration, "webhook-configuration", "track-controller", "ValidatingWebhookConfiguration whose caBundle the leader keeps; empty: leave the caBundle to cert-manager or to you")
	fs.StringSliceVar(&cfg.Webhook.DNSNames, "webhook-dns-names", []string{"track-controller-webhook.trackrouter-system.svc"}, "names the serving certificate is for: the webhook Service's")
	webhookIPs := fs.StringSlice("webhook-ips", nil, "IP addresses the serving certificate is for (an API server that calls the webhook by URL)")
	secretDir := fs.String("alert-secret-dir", "", "directory of alert secrets (a mounted Secret): files webhook-url and smtp-password; a missing file leaves that part off")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "track-controller turns each service spec (a ConfigMap labelled trackrouter.dev/service, key\n"+
			"service.yaml) into its track Deployments, track Services and HAProxy tier, keeps them\n"+
			"as declared and removes what the spec no longer asks for.\n\nFlags:\n%s", fs.FlagUsages())
	}
	logLevel := fs.String("log-level", "info", "log at this level and above: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version.String("track-controller"))
		return
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "track-controller: unexpected argument %q: track-controller takes flags only\nSee 'track-controller --help'.\n", fs.Arg(0))
		os.Exit(2)
	}
	if cfg.RouterImage == "" && (os.Getenv("POD_NAMESPACE") == "" || os.Getenv("POD_NAME") == "") {
		fmt.Fprintf(os.Stderr, "track-controller: --router-image is required outside a Pod: the image with haproxy and trackrouter for the HAProxy tier\nSee 'track-controller --help'.\n")
		os.Exit(2)
	}
	for _, ip := range *webhookIPs {
		a := net.ParseIP(ip)
		if a == nil {
			fmt.Fprintf(os.Stderr, "track-controller: --webhook-ips %q is not an IP address\nSee 'track-controller --help'.\n", ip)
			os.Exit(2)
		}
		cfg.Webhook.IPs = append(cfg.Webhook.IPs, a)
	}
	if err := checkFlags(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "track-controller: %v\nSee 'track-controller --help'.\n", err)
		os.Exit(2)
	}
	if err := alertSecrets(&cfg.Alerts, *secretDir); err != nil {
		fmt.Fprintf(os.Stderr, "track-controller: %v\nSee 'track-controller --help'.\n", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "track-controller: --log-level %q: want debug, info, warn or error\nSee 'track-controller --help'.\n", *logLevel)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := controller.Execute(ctx, cfg, log); err != nil {
		log.Error("track-controller", "err", err)
		stop()
		os.Exit(1)
	}
}

// checkFlags refuses values that make no sense, before anything runs.
func checkFlags(cfg controller.Config) error {
	switch {
	case cfg.Workers < 1:
		return fmt.Errorf("--workers %d: at least 1", cfg.Workers)
	case cfg.MinEndpoints < 0:
		return fmt.Errorf("--min-endpoints %d: 0 or more", cfg.MinEndpoints)
	case cfg.HealthInterval <= 0:
		return fmt.Errorf("--health-interval %s: more than 0", cfg.HealthInterval)
	case cfg.Alerts.After < 0:
		return fmt.Errorf("--alert-after %s: 0 or more", cfg.Alerts.After)
	case cfg.QPS < 0 || cfg.Burst < 0:
		return errors.New("--kube-api-qps and --kube-api-burst: 0 (the default) or more")
	}
	return nil
}

// alertSecrets reads the secrets of the alert destinations from dir and
// checks that an email destination is complete.
func alertSecrets(a *controller.AlertConfig, dir string) error {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return strings.TrimSpace(string(b)), err
	}
	if dir != "" {
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			return fmt.Errorf("--alert-secret-dir %s: not a directory (mount the Secret there, optional: true keeps it empty)", dir)
		}
		url, err := read("webhook-url")
		if err != nil {
			return fmt.Errorf("--alert-secret-dir: %w", err)
		}
		if url != "" {
			a.WebhookURL = url
		}
		if a.SMTPPassword, err = read("smtp-password"); err != nil {
			return fmt.Errorf("--alert-secret-dir: %w", err)
		}
	}
	if a.WebhookURL != "" {
		u, err := url.Parse(a.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("alert webhook URL: want http(s)://HOST/..., got %q", clip(a.WebhookURL))
		}
	}
	if a.SMTPAddr != "" {
		if _, port, err := net.SplitHostPort(a.SMTPAddr); err != nil || port == "" {
			return fmt.Errorf("--alert-smtp-addr %q: want HOST:PORT (587 for STARTTLS submission)", a.SMTPAddr)
		}
		for _, addr := range append([]string{a.SMTPFrom}, a.SMTPTo...) {
			if _, err := mail.ParseAddress(addr); err != nil {
				return fmt.Errorf("alert email address %q: %v", addr, err)
			}
		}
	}
	if a.SMTPUsername != "" && a.SMTPAddr == "" {
		return errors.New("--alert-smtp-username needs --alert-smtp-addr")
	}
	if a.SMTPCAFile != "" {
		if _, err := os.ReadFile(a.SMTPCAFile); err != nil {
			return fmt.Errorf("--alert-smtp-ca-file: %w", err)
		}
	}
	if a.SMTPAddr != "" && (a.SMTPFrom == "" || len(a.SMTPTo) == 0) {
		return errors.New("--alert-smtp-addr needs --alert-smtp-from and --alert-smtp-to")
	}
	if a.SMTPAddr == "" && (a.SMTPFrom != "" || len(a.SMTPTo) > 0) {
		return errors.New("--alert-smtp-from and --alert-smtp-to need --alert-smtp-addr")
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
