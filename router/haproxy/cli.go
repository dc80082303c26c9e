// Package haproxy is the sidecar's seam to HAProxy: the master CLI that
// reads what HAProxy runs and changes it (reload, weights, maps), and the
// supervisor that runs HAProxy as a child process. It decides nothing.
package haproxy

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

	"github.com/trackrouter/trackrouter/haproxyconf"
)

// Observed is HAProxy's state as HAProxy reports it.
type Observed struct {
	Proc    Proc
	Stamp   string // the current worker's global description; "" if it has none
	Weights map[haproxyconf.ServerKey]int
	Groups  map[string]string // the groups map's entries; nil without a map
	// Forced lists the servers put in maintenance or drain by hand on the
	// Runtime API (not by a health check or name resolution).
	Forced map[haproxyconf.ServerKey]bool
	// Down lists the servers HAProxy does not send traffic to, whatever
	// their weight, and why: ServerDown (its health checks fail),
	// ServerNoAddress (its name did not resolve), ServerMaint (in
	// maintenance).
	Down map[haproxyconf.ServerKey]string
}

// Why a server takes no traffic, in Observed.Down.
const (
	ServerDown      = "down"
	ServerNoAddress = "no address"
	ServerMaint     = "maintenance"
)

// MasterCLI drives an HAProxy started in master-worker mode (-W -S socket)
// through its master socket.
type MasterCLI struct {
	Socket  string
	Timeout time.Duration // for one command; default 5s
}

// ErrUnavailable says HAProxy's master socket could not be reached.
var ErrUnavailable = errors.New("haproxy master socket unavailable")

// Command sends one line to the master socket and returns the whole answer.
// A canceled ctx interrupts it at once, even when HAProxy is frozen.
func (m *MasterCLI) Command(ctx context.Context, line string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", m.Socket)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		// Not received: as good as not connected.
		return "", fmt.Errorf("%w: %q: %v", ErrUnavailable, line, err)
	}
	// Without CloseWrite the master waits for more commands.
	conn.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(conn)
	if err != nil {
		return string(b), fmt.Errorf("master socket %q: %w", line, err)
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
	out, err := m.Command(ctx, "show proc")
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
		return p, fmt.Errorf("show proc: no master line in %q", clip(out))
	}
	return p, nil
}

// Observe reads show proc from the master and show info, show servers
// state and show map from the current worker.
func (m *MasterCLI) Observe(ctx context.Context, mapPath string) (Observed, error) {
	var o Observed
	var err error
	if o.Proc, err = m.ShowProc(ctx); err != nil {
		return o, err
	}
	if len(o.Proc.Workers) == 0 {
		return o, nil // starting, or every worker gone: nothing runs
	}
	info, err := m.Command(ctx, "@1 show info")
	if err != nil {
		return o, err
	}
	o.Stamp = parseDescription(info)
	state, err := m.Command(ctx, "@1 show servers state")
	if err != nil {
		return o, err
	}
	servers, err := parseServersState(state)
	if err != nil {
		return o, err
	}
	o.Weights, o.Forced, o.Down = servers.weights, servers.forced, servers.down
	if mapPath != "" {
		out, err := m.Command(ctx, "@1 show map "+mapPath)
		if err != nil {
			return o, err
		}
		o.Groups = parseShowMap(out)
	}
	return o, nil
}

// parseDescription returns the "description:" line of show info.
func parseDescription(info string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "description:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// servers is what show servers state says of each server.
type servers struct {
	weights map[haproxyconf.ServerKey]int
	forced  map[haproxyconf.ServerKey]bool
	down    map[haproxyconf.ServerKey]string
}

// parseServersState reads show servers state by the column names of its
// header line: every server's user weight, which servers are in a
// maintenance or drain forced on the Runtime API, and which take no
// traffic and why.
func parseServersState(out string) (servers, error) {
	// srv_admin_state bits (HAProxy's enum srv_admin, measured on 2.6):
	// SRV_ADMF_FMAINT 0x01 and SRV_ADMF_FDRAIN 0x08 are forced by "set
	// server ... state"; SRV_ADMF_IMAINT 0x02 is inherited from a tracked
	// server, SRV_ADMF_CMAINT 0x04 the config's "disabled", SRV_ADMF_RMAINT
	// 0x20 a name that did not resolve. srv_op_state 0 is SRV_ST_STOPPED:
	// down.
	const (
		forcedBits = 0x01 | 0x08
		maintBits  = 0x01 | 0x02 | 0x04
		rmaint     = 0x20
	)
	s := servers{weights: make(map[haproxyconf.ServerKey]int), forced: make(map[haproxyconf.ServerKey]bool)}
	col := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case fields[0] == "#":
			for i, name := range fields[1:] {
				col[name] = i
			}
		case len(col) > 0:
			be, srv, uw, adm, op := col["be_name"], col["srv_name"], col["srv_uweight"], col["srv_admin_state"], col["srv_op_state"]
			if len(fields) <= max(be, srv, uw, adm, op) {
				continue
			}
			key := haproxyconf.ServerKey{Backend: fields[be], Server: fields[srv]}
			n, err := strconv.Atoi(fields[uw])
			if err != nil {
				return servers{}, fmt.Errorf("show servers state: weight %q of %s", clip(fields[uw]), key)
			}
			s.weights[key] = n
			a, aerr := strconv.Atoi(fields[adm])
			if aerr == nil && a&forcedBits != 0 {
				s.forced[key] = true
			}
			why := ""
			switch o, oerr := strconv.Atoi(fields[op]); {
			case aerr == nil && a&rmaint != 0:
				why = ServerNoAddress
			case aerr == nil && a&maintBits != 0:
				why = ServerMaint
			case oerr == nil && o == 0:
				why = ServerDown
			}
			if why != "" {
				if s.down == nil {
					s.down = make(map[haproxyconf.ServerKey]string)
				}
				s.down[key] = why
			}
		}
	}
	if len(col) == 0 {
		return servers{}, fmt.Errorf("show servers state: no header in %q", clip(out))
	}
	return s, nil
}

// parseShowMap reads "0x56493dd9fa20 free canary" lines; an unknown map
// (a config without it) reads as empty.
func parseShowMap(out string) map[string]string {
	got := make(map[string]string)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && strings.HasPrefix(f[0], "0x") {
			got[f[1]] = f[2]
		}
	}
	return got
}

// Reload sends "reload". HAProxy 2.6 answers nothing and closes the
// connection while the master re-executes; 2.7+ answers Success=1 or
// Success=0 with the start-up log once it parsed the config, which may take
// longer than the read timeout. So once the line is written, only an
// explicit Success=0 is an error here: Observe confirms the rest.
func (m *MasterCLI) Reload(ctx context.Context) error {
	answer, err := m.Command(ctx, "reload")
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	if strings.Contains(answer, "Success=0") {
		return fmt.Errorf("%w: %s", ErrReloadFailed, clip(strings.TrimSpace(answer)))
	}
	return nil
}

// ErrReloadFailed says HAProxy refused a reload and kept the old workers.
var ErrReloadFailed = errors.New("haproxy reload failed")

// SetWeight sets and confirms a server's weight on the current worker.
func (m *MasterCLI) SetWeight(ctx context.Context, key haproxyconf.ServerKey, weight int) error {
	if err := m.expectEmpty(ctx, fmt.Sprintf("@1 set server %s weight %d", key, weight)); err != nil {
		return err
	}
	out, err := m.Command(ctx, "@1 get weight "+key.String())
	if err != nil {
		return err
	}
	// "20 (initial 10)"
	got, convErr := strconv.Atoi(strings.Fields(out + " x")[0])
	if convErr != nil || got != weight {
		return fmt.Errorf("get weight %s: want %d, HAProxy says %q", key, weight, clip(strings.TrimSpace(out)))
	}
	return nil
}

// ReplaceMap fills a new version of the map and commits it in one step, so
// no request sees a half-changed map, then checks it with show map.
func (m *MasterCLI) ReplaceMap(ctx context.Context, path string, entries map[string]string) error {
	out, err := m.Command(ctx, "@1 prepare map "+path)
	if err != nil {
		return err
	}
	// "New version created: 3"
	_, v, ok := strings.Cut(strings.TrimSpace(out), "New version created:")
	ver, convErr := strconv.Atoi(strings.TrimSpace(v))
	if !ok || convErr != nil {
		return fmt.Errorf("prepare map %s: %q", path, clip(strings.TrimSpace(out)))
	}
	for _, k := range slices.Sorted(maps.Keys(entries)) {
		if err := m.expectEmpty(ctx, fmt.Sprintf("@1 add map @%d %s %s %s", ver, path, k, entries[k])); err != nil {
			return err
		}
	}
	if err := m.expectEmpty(ctx, fmt.Sprintf("@1 commit map @%d %s", ver, path)); err != nil {
		return err
	}
	out, err = m.Command(ctx, "@1 show map "+path)
	if err != nil {
		return err
	}
	if got := parseShowMap(out); !maps.Equal(got, entries) {
		return fmt.Errorf("show map %s: want %v, HAProxy has %v", path, entries, got)
	}
	return nil
}

// SetReady sends "set server B/S state ready" on the current worker.
func (m *MasterCLI) SetReady(ctx context.Context, key haproxyconf.ServerKey) error {
	return m.expectEmpty(ctx, fmt.Sprintf("@1 set server %s state ready", key))
}

// expectEmpty sends a command whose success is an empty answer.
func (m *MasterCLI) expectEmpty(ctx context.Context, line string) error {
	out, err := m.Command(ctx, line)
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(out); s != "" {
		return fmt.Errorf("%s: %s", strings.TrimPrefix(line, "@1 "), clip(s))
	}
	return nil
}

// clip cuts text for an error message to about 100 characters.
func clip(s string) string { return clipN(s, 100) }

func clipN(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}
