package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HAProxy is what the router needs from a running HAProxy. Only the router's
// loop calls it, one call at a time: HAProxy loses a reload sent while
// another is running.
type HAProxy interface {
	// Reload makes HAProxy load the config file again and returns once the
	// new worker is running, or an error saying why the reload failed.
	Reload(ctx context.Context) error
	// SetWeight sets a server's weight through the Runtime API and confirms
	// it with get weight.
	SetWeight(ctx context.Context, backend, server string, weight int) error
	// SetGroups changes the entries of a groups map from old to new through
	// the Runtime API and confirms them with show map.
	SetGroups(ctx context.Context, path string, old, new map[string]string) error
	// Alive reports whether HAProxy is running, as far as is known.
	Alive() bool
}

// MasterCLI drives an HAProxy started in master-worker mode (-W -S socket)
// through its master socket.
type MasterCLI struct {
	Socket  string
	Timeout time.Duration // for one reload, default 10s
}

// ErrUnavailable says HAProxy's master socket could not be reached: a
// transient condition worth retrying, unlike a refused reload.
var ErrUnavailable = errors.New("haproxy master socket unavailable")

// command sends one line to the master socket and returns the whole answer.
func (m *MasterCLI) command(ctx context.Context, line string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", m.Socket)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", fmt.Errorf("master socket: %w", err)
	}
	// Without CloseWrite the master waits for more commands.
	conn.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(conn)
	if err != nil {
		return string(b), fmt.Errorf("master socket: %w", err)
	}
	return string(b), nil
}

// Proc is the master's view of itself and its workers (show proc).
type Proc struct {
	MasterPID     int
	Reloads       int
	FailedReloads int
	Workers       []int // current workers' PIDs
	OldWorkers    []int
}

// ShowProc parses the master CLI's "show proc".
func (m *MasterCLI) ShowProc(ctx context.Context) (Proc, error) {
	out, err := m.command(ctx, "show proc")
	if err != nil {
		return Proc{}, err
	}
	return parseShowProc(out)
}

func parseShowProc(out string) (Proc, error) {
	var p Proc
	section := ""
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if strings.HasPrefix(fields[0], "#") {
			section = strings.TrimSpace(strings.Join(fields, " "))
			continue
		}
		pid, err := strconv.Atoi(fields[0])
		if err != nil || len(fields) < 3 {
			continue
		}
		switch {
		case fields[1] == "master":
			p.MasterPID = pid
			p.Reloads, _ = strconv.Atoi(fields[2])
			// "2 [failed: 0]"
			if i := strings.Index(line, "[failed:"); i >= 0 {
				rest := strings.TrimSpace(line[i+len("[failed:"):])
				if j := strings.Index(rest, "]"); j >= 0 {
					p.FailedReloads, _ = strconv.Atoi(strings.TrimSpace(rest[:j]))
				}
			}
		case fields[1] == "worker" && section == "# workers":
			p.Workers = append(p.Workers, pid)
		case fields[1] == "worker" && section == "# old workers":
			p.OldWorkers = append(p.OldWorkers, pid)
		}
	}
	if p.MasterPID == 0 {
		return p, fmt.Errorf("show proc: no master line in %q", out)
	}
	return p, nil
}

// ErrReloadFailed says HAProxy refused a reload and kept the old workers.
var ErrReloadFailed = errors.New("haproxy reload failed")

// Reload sends "reload" and confirms it with show proc: the master's reload
// counter goes up, its failed counter does not, and a worker that was not
// there before runs. HAProxy 2.6 answers nothing to reload; 2.7+ answers
// Success=1 or Success=0 with the start-up log, which is used when present.
func (m *MasterCLI) Reload(ctx context.Context) error {
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Right after a reload the master re-executes itself and refuses
	// connections for ~50 ms: wait for it rather than fail.
	before, err := m.ShowProc(ctx)
	for start := time.Now(); errors.Is(err, ErrUnavailable) && time.Since(start) < 2*time.Second; {
		time.Sleep(10 * time.Millisecond)
		before, err = m.ShowProc(ctx)
	}
	if err != nil {
		return err
	}
	answer, err := m.command(ctx, "reload")
	if err != nil {
		return err
	}
	if strings.Contains(answer, "Success=0") {
		return fmt.Errorf("%w: %s", ErrReloadFailed, strings.TrimSpace(answer))
	}
	old := make(map[int]bool)
	for _, pid := range before.Workers {
		old[pid] = true
	}
	for {
		after, err := m.ShowProc(ctx)
		if err == nil {
			if after.FailedReloads > before.FailedReloads {
				return fmt.Errorf("%w: the master counts %d failed reloads (was %d)", ErrReloadFailed, after.FailedReloads, before.FailedReloads)
			}
			if after.Reloads > before.Reloads {
				for _, pid := range after.Workers {
					if !old[pid] {
						return nil
					}
				}
			}
		}
		// While the master re-executes itself the socket may refuse
		// connections for a moment: keep asking until the deadline.
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: not confirmed within %s (last error: %v)", ErrReloadFailed, timeout, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// SetWeight sets and confirms a server's weight on the current worker.
func (m *MasterCLI) SetWeight(ctx context.Context, backend, server string, weight int) error {
	key := backend + "/" + server
	out, err := m.command(ctx, fmt.Sprintf("@1 set server %s weight %d", key, weight))
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(out); s != "" {
		return fmt.Errorf("set server %s weight %d: %s", key, weight, s)
	}
	out, err = m.command(ctx, "@1 get weight "+key)
	if err != nil {
		return err
	}
	// "20 (initial 10)"
	got, convErr := strconv.Atoi(strings.Fields(out + " x")[0])
	if convErr != nil || got != weight {
		return fmt.Errorf("get weight %s: want %d, HAProxy says %q", key, weight, strings.TrimSpace(out))
	}
	return nil
}

// SetGroups deletes, adds and sets map entries on the current worker, then
// checks with show map that the map holds exactly new.
func (m *MasterCLI) SetGroups(ctx context.Context, path string, old, new map[string]string) error {
	var cmds []string
	for _, k := range slices.Sorted(maps.Keys(old)) {
		if _, ok := new[k]; !ok {
			cmds = append(cmds, fmt.Sprintf("@1 del map %s %s", path, k))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(new)) {
		v, ok := old[k]
		switch {
		case !ok:
			cmds = append(cmds, fmt.Sprintf("@1 add map %s %s %s", path, k, new[k]))
		case v != new[k]:
			cmds = append(cmds, fmt.Sprintf("@1 set map %s %s %s", path, k, new[k]))
		}
	}
	for _, c := range cmds {
		out, err := m.command(ctx, c)
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(out); s != "" {
			return fmt.Errorf("%s: %s", strings.TrimPrefix(c, "@1 "), s)
		}
	}
	out, err := m.command(ctx, "@1 show map "+path)
	if err != nil {
		return err
	}
	got := make(map[string]string)
	for _, line := range strings.Split(out, "\n") {
		// "0x56493dd9fa20 free canary"
		if f := strings.Fields(line); len(f) == 3 {
			got[f[1]] = f[2]
		}
	}
	if !maps.Equal(got, new) {
		return fmt.Errorf("show map %s: want %v, HAProxy has %v", path, new, got)
	}
	return nil
}

// Alive is true: an HAProxy run by someone else is assumed up, and a failed
// call says otherwise.
func (m *MasterCLI) Alive() bool { return true }
