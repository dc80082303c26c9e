package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Supervisor runs HAProxy itself in master-worker mode (--run-haproxy): it
// starts HAProxy on the first Reload, once a valid config is on disk,
// restarts it if it exits, and soft-stops it on Stop.
type Supervisor struct {
	Binary string // haproxy executable
	Config string // config file path
	CLI    *MasterCLI
	Log    *slog.Logger
	Output io.Writer // HAProxy's stdout and stderr; default os.Stderr

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

var _ HAProxy = (*Supervisor)(nil)

// Reload starts HAProxy if it is not running, or reloads it.
func (s *Supervisor) Reload(ctx context.Context) error {
	if s.running() {
		return s.CLI.Reload(ctx)
	}
	return s.start(ctx)
}

// SetWeight goes through the master socket.
func (s *Supervisor) SetWeight(ctx context.Context, backend, server string, weight int) error {
	return s.CLI.SetWeight(ctx, backend, server, weight)
}

// SetGroups goes through the master socket.
func (s *Supervisor) SetGroups(ctx context.Context, path string, old, new map[string]string) error {
	return s.CLI.SetGroups(ctx, path, old, new)
}

// Alive reports whether the HAProxy process runs.
func (s *Supervisor) Alive() bool { return s.running() }

func (s *Supervisor) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// start runs "haproxy -W -S socket -f config" and waits until the master
// socket shows a worker.
func (s *Supervisor) start(ctx context.Context) error {
	os.Remove(s.CLI.Socket) // a socket left by an earlier run refuses the bind
	cmd := exec.Command(s.Binary, "-W", "-S", s.CLI.Socket+",mode,600", "-f", s.Config)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if s.Output != nil {
		cmd.Stdout, cmd.Stderr = s.Output, s.Output
	}
	// HAProxy dies with the sidecar, even if the sidecar is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		s.Log.Warn("haproxy exited", "pid", cmd.Process.Pid, "err", err)
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	s.Log.Info("haproxy started", "pid", cmd.Process.Pid, "config", s.Config)

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if p, err := s.CLI.ShowProc(ctx); err == nil && len(p.Workers) > 0 {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("haproxy exited at start (see its log above)")
		case <-ctx.Done():
			return fmt.Errorf("haproxy did not start a worker within 10s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop soft-stops HAProxy (SIGUSR1: stop accepting, finish the requests in
// flight; hard-stop-after bounds it) and waits up to grace before killing it.
func (s *Supervisor) Stop(grace time.Duration) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGUSR1)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}
