package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Supervisor runs HAProxy in master-worker mode as its own process group.
type Supervisor struct {
	Binary string // haproxy executable
	Config string // config file path
	Socket string // master socket path
	Log    *slog.Logger
	Output io.Writer // HAProxy's stdout and stderr; default os.Stderr
	// LogPipe, when set, is the request log's write end (samples.Pipe):
	// HAProxy gets it as its file descriptor 3 (LogFD). A full pipe drops
	// log lines and never holds a worker: HAProxy 2.6 writes to it without
	// blocking (samples.TestPipeNeverHoldsHAProxy), and the Supervisor
	// makes it non-blocking too, whatever HAProxy does. It stays open
	// across restarts and reloads (the master keeps it through its
	// re-exec).
	LogPipe *os.File

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd exits
	alerts []alert       // the last few [ALERT] lines
}

type alert struct {
	at   time.Time
	line string
}

// LogFD is the file descriptor HAProxy has Supervisor.LogPipe as.
const LogFD = 3

// Start runs "haproxy -W -S socket -f config". It refuses to remove a
// master socket that still answers: another HAProxy owns it.
func (s *Supervisor) Start(ctx context.Context) error {
	if conn, err := net.DialTimeout("unix", s.Socket, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("master socket %s answers: another HAProxy runs on it; stop it or give this sidecar its own --master-socket", s.Socket)
	}
	// A socket left by an earlier run refuses the bind.
	if err := os.Remove(s.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale master socket: %w", err)
	}
	cmd := exec.Command(s.Binary, "-W", "-S", s.Socket+",mode,600", "-f", s.Config)
	out := s.Output
	if out == nil {
		out = os.Stderr
	}
	w := io.MultiWriter(out, &alertWriter{s: s})
	cmd.Stdout, cmd.Stderr = w, w
	// HAProxy dies with the sidecar, even if the sidecar is killed; its own
	// process group lets Kill reach the workers of a frozen master.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if s.LogPipe != nil {
		cmd.ExtraFiles = []*os.File{s.LogPipe}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	if s.LogPipe != nil {
		// O_NONBLOCK is the open file's, shared with HAProxy's fd 3.
		if err := syscall.SetNonblock(int(s.LogPipe.Fd()), true); err != nil {
			s.Log.Warn("the request log pipe stays blocking: a slow reader could hold HAProxy", "err", err)
		}
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		if err != nil {
			s.Log.Warn("haproxy exited", "pid", cmd.Process.Pid, "err", err)
		} else {
			s.Log.Info("haproxy exited", "pid", cmd.Process.Pid, "code", 0)
		}
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	s.Log.Info("haproxy started", "pid", cmd.Process.Pid, "config", s.Config)
	return nil
}

// Running reports whether the HAProxy master runs.
func (s *Supervisor) Running() bool {
	done := s.Exited()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// PID is the master's process ID (the process group of HAProxy), 0 before
// the first start.
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Exited is closed when the current HAProxy exits; nil before the first start.
func (s *Supervisor) Exited() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Kill sends SIGKILL to HAProxy's process group and waits for the master.
func (s *Supervisor) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Reexec sends SIGUSR2 to the master.
func (s *Supervisor) Reexec() error {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return errors.New("haproxy not started")
	}
	return cmd.Process.Signal(syscall.SIGUSR2)
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
		s.Kill()
	}
}

// Alerts returns the [ALERT] lines HAProxy printed since t.
func (s *Supervisor) Alerts(since time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.alerts {
		if !a.at.Before(since) {
			out = append(out, a.line)
		}
	}
	return out
}

// alertWriter keeps HAProxy's [ALERT] lines for error messages.
type alertWriter struct {
	s    *Supervisor
	part []byte
}

func (w *alertWriter) Write(p []byte) (int, error) {
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		line := string(w.part[:i])
		w.part = w.part[i+1:]
		if strings.Contains(line, "[ALERT]") {
			w.s.mu.Lock()
			w.s.alerts = append(w.s.alerts, alert{time.Now(), clipN(strings.TrimSpace(line), 300)})
			if len(w.s.alerts) > 8 {
				w.s.alerts = w.s.alerts[1:]
			}
			w.s.mu.Unlock()
		}
	}
	if len(w.part) > 4096 {
		w.part = w.part[:0]
	}
	return len(p), nil
}
