// Package procs runs a test rig's child processes (the control plane's,
// the real node's): each logs to a file of its own, dies with the test
// binary even on a panic or a timeout (Pdeathsig), and is stopped by PID.
package procs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Group is a set of named processes logging to LogDir/NAME.log.
type Group struct {
	LogDir string
	// Grace is how long Stop waits after SIGTERM before SIGKILL.
	Grace time.Duration

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// LogPath is the log file of the process name.
func (g *Group) LogPath(name string) string { return filepath.Join(g.LogDir, name+".log") }

// Start runs path as the process name.
func (g *Group) Start(name, path string, args ...string) error {
	log, err := os.OpenFile(g.LogPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	g.mu.Lock()
	if g.procs == nil {
		g.procs = make(map[string]*proc)
	}
	g.procs[name] = p
	g.mu.Unlock()
	return nil
}

// Stop stops the process name by PID: SIGTERM, then SIGKILL after Grace.
func (g *Group) Stop(name string) {
	g.mu.Lock()
	p := g.procs[name]
	delete(g.procs, name)
	g.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(g.Grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited names a process that has exited by itself, or returns "".
func (g *Group) Exited() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, p := range g.procs {
		select {
		case <-p.done:
			return name
		default:
		}
	}
	return ""
}

// Poll calls check every interval until it returns nil, a process of the
// group exits (the error names its log), or timeout.
func (g *Group) Poll(ctx context.Context, what string, interval, timeout time.Duration, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		if name := g.Exited(); name != "" {
			return false, fmt.Errorf("%s exited; see %s", name, g.LogPath(name))
		}
		last = check(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s: %w (last: %v)", what, err, last)
	}
	return nil
}
