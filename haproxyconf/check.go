package haproxyconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ConfigError is one problem haproxy -c found, at a line of the checked file.
type ConfigError struct {
	Line int // 0 when haproxy named no line
	Msg  string
}

func (e ConfigError) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// CheckError is a config that haproxy -c refused.
type CheckError struct {
	Problems []ConfigError
	Output   string // everything haproxy printed
}

func (e *CheckError) Error() string {
	if len(e.Problems) == 0 {
		return "haproxy -c refused the config: " + strings.TrimSpace(e.Output)
	}
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return "haproxy -c refused the config: " + strings.Join(msgs, "; ")
}

// Checker runs the real haproxy binary in check mode.
type Checker struct {
	// Binary is the haproxy executable; empty means "haproxy" from PATH.
	Binary string
	// Timeout bounds one check (name resolution at load time can hang it);
	// zero means no bound but the context's.
	Timeout time.Duration
	// Dir is where the config to check is written (in a directory of its
	// own, removed after); empty means the system's temporary directory.
	// The sidecar uses its config's directory: in a pod with a read-only
	// root filesystem /tmp cannot be written.
	Dir string
}

// Check writes cfg to a temporary file and runs haproxy -c on it. A nil error
// means haproxy accepted it; a *CheckError means it did not; any other error
// means the check could not run.
func (c Checker) Check(ctx context.Context, cfg []byte) error {
	dir, err := os.MkdirTemp(c.Dir, "trackrouter-check-")
	if err != nil && c.Dir != "" {
		// Dir not writable (a dry run's): the system's, if that is.
		var err2 error
		if dir, err2 = os.MkdirTemp("", "trackrouter-check-"); err2 == nil {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("a directory for the config to check: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return err
	}
	return c.CheckFile(ctx, path)
}

// FindBinary finds the haproxy executable: name on PATH, or, for the
// default name, /usr/sbin/haproxy (where Debian installs it, often not on a
// user's PATH).
func FindBinary(name string) (string, error) {
	if name == "" {
		name = "haproxy"
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if name == "haproxy" {
		if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
			return "/usr/sbin/haproxy", nil
		}
	}
	return "", fmt.Errorf("haproxy executable %q not found: install it (apt-get install haproxy) or pass --haproxy-bin", name)
}

// CheckFile runs haproxy -c on a file. See Check.
func (c Checker) CheckFile(ctx context.Context, path string) error {
	bin, err := FindBinary(c.Binary)
	if err != nil {
		return err
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	// No -q: it hides the [ALERT] lines that say what is wrong.
	cmd := exec.CommandContext(ctx, bin, "-c", "-f", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, killed whole on timeout: a wrapper script's
	// children would otherwise keep the output pipe, and Wait, open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && ctx.Err() == nil && exit.Exited():
		// HAProxy's verdict is an exit status with [ALERT] lines; an exit
		// without them (a wrapper that failed, a binary being replaced) says
		// nothing about the config.
		if problems := parseAlerts(out.String(), path); len(problems) > 0 {
			return &CheckError{Problems: problems, Output: out.String()}
		}
		return fmt.Errorf("%s -c exited with %d and no [ALERT] line: %q", bin, exit.ExitCode(), clip(strings.TrimSpace(out.String())))
	default:
		return fmt.Errorf("run %s -c: %w", bin, err)
	}
}

// clip cuts output quoted in an error to about 200 characters.
func clip(s string) string {
	if len(s) <= 200 {
		return s
	}
	return s[:200] + "..."
}

// alertRE matches haproxy's "[ALERT] (pid) : config : parsing [FILE:LINE] : msg".
var alertRE = regexp.MustCompile(`^\[ALERT\]\s*\(\d+\)\s*:\s*(?:config\s*:\s*)?(.*)$`)

// parseAlerts keeps the [ALERT] lines, with the line number where haproxy
// gives one, and drops the closing summary lines.
func parseAlerts(out, path string) []ConfigError {
	var problems []ConfigError
	loc := "[" + path + ":"
	for _, line := range strings.Split(out, "\n") {
		m := alertRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		msg := m[1]
		if strings.HasPrefix(msg, "Error(s) found in configuration file") || strings.HasPrefix(msg, "Fatal errors found") {
			continue
		}
		var n int
		if i := strings.Index(msg, loc); i >= 0 {
			rest := msg[i+len(loc):]
			if j := strings.Index(rest, "]"); j >= 0 {
				n, _ = strconv.Atoi(rest[:j])
				msg = strings.TrimLeft(strings.TrimPrefix(msg[:i], "parsing ")+rest[j+1:], " :")
				if msg == "" {
					msg = m[1]
				}
			}
		}
		problems = append(problems, ConfigError{Line: n, Msg: strings.TrimSpace(msg)})
	}
	return problems
}
