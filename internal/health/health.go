// Package health serves the endpoints both binaries expose: /metrics,
// /healthz (the process is alive) and /readyz.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Route is one more path Serve serves.
type Route struct {
	Path    string
	Handler http.Handler
}

// Serve serves reg on /metrics, /healthz and /readyz (200 when ready
// returns nil, else 503 with its message), and routes, on addr until ctx
// ends. A listen error is returned at once: a process without its probes
// must not run.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, ready func() error, log *slog.Logger, routes ...Route) error {
	mux := http.NewServeMux()
	for _, r := range routes {
		mux.Handle(r.Path, r.Handler)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics and health on %s: %w", addr, err)
	}
	log.Info("serving metrics and health", "addr", ln.Addr().String())
	return ServeUntil(ctx, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln, false)
}

// ServeUntil serves srv on ln until ctx ends, then shuts it down, giving
// requests in flight 2 s; with useTLS, over TLS by srv.TLSConfig. Only an
// error other than the shutdown is returned.
func ServeUntil(ctx context.Context, srv *http.Server, ln net.Listener, useTLS bool) error {
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	var err error
	if useTLS {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
