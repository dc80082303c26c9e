// Package echo runs the HTTP backends of trackrouter's --demo mode and of the
// routing tests: each answers every request with its name (a track's name)
// or a body of its own.
package echo

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is a local HTTP server that answers every request with its name.
type Backend struct {
	Name string
	Addr string // host:port it listens on
	hits atomic.Int64
	mu   sync.Mutex
	srv  *http.Server
}

// Start listens on addr ("127.0.0.1:0" picks a port) and serves until Stop.
func Start(name, addr string) (*Backend, error) { return StartBody(name, addr, name) }

// StartBody is Start with another answer than the name.
func StartBody(name, addr, body string) (*Backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &Backend{Name: name, Addr: ln.Addr().String()}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go b.srv.Serve(ln)
	return b, nil
}

// Hits is the number of requests the backend has answered.
func (b *Backend) Hits() int64 { return b.hits.Load() }

// Stop closes the listener and every connection: the backend is down.
func (b *Backend) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		b.srv.Shutdown(context.Background())
		b.srv.Close()
		b.srv = nil
	}
}
