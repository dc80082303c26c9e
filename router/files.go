package router

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/fsutil"
)

// errChecking says haproxy -c runs on the target in the background: the
// loop goes on observing (and restarting HAProxy) until its verdict.
var errChecking = errors.New("haproxy -c in progress")

// checkResult is the verdict of a background haproxy -c.
type checkResult struct {
	t   *target
	err error
}

// writeFiles writes the map and the config of t, once haproxy -c accepted
// its stamp. The check runs in the background (name resolution can make it
// slow): until its verdict writeFiles returns errChecking.
func (r *Router) writeFiles(ctx context.Context, t *target) error {
	if !r.checked[t.Stamp] {
		if r.checking == nil {
			r.checking = t
			ctx, cancel := context.WithTimeout(ctx, r.reloadTimeout())
			go func() {
				defer cancel()
				r.checkDone <- checkResult{t, r.check(ctx, t)}
			}()
		}
		return errChecking
	}
	return r.write(t)
}

// write puts t's map and config in place.
func (r *Router) write(t *target) error {
	if t.Map != nil {
		if err := r.Files.WriteFile(r.Render.GroupsMap, t.Map); err != nil {
			r.failed("write", err)
			return err
		}
	}
	if err := r.Files.WriteFile(r.ConfigPath, t.Config); err != nil {
		r.failed("write", err)
		return err
	}
	return nil
}

// checked records the verdict of a background haproxy -c. Only HAProxy's
// verdict refuses a config; a check that could not run is retried.
func (r *Router) checkedResult(res checkResult) {
	r.checking = nil
	var ce *haproxyconf.CheckError
	switch {
	case errors.As(res.err, &ce):
		r.refused = res.t.Stamp
		r.reject(res.t.spec.Source, fmt.Errorf("haproxy -c: %w", res.err))
	case res.err != nil:
		r.failed("check", fmt.Errorf("haproxy -c could not run: %w", res.err))
	default:
		r.checked[res.t.Stamp] = true
	}
}

// prepare parses, validates and renders one update.
// check runs haproxy -c on t. In map mode the config names the groups
// map's final path, which must not change before the check passes: the
// check runs on a copy rendered against a temporary map file.
func (r *Router) check(ctx context.Context, t *target) error {
	if t.Map == nil {
		return r.Checker.Check(ctx, t.Config)
	}
	dir := filepath.Dir(r.Render.GroupsMap)
	if _, err := os.Stat(dir); err != nil {
		dir = "" // not made yet (--once --dry-run makes nothing): the system's temporary directory
	}
	tmp, err := os.CreateTemp(dir, ".groups.map-check-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(t.Map)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	opt := r.Render
	opt.GroupsMap = tmp.Name()
	checkCfg, err := haproxyconf.Render(t.spec, opt)
	if err != nil {
		return err
	}
	return r.Checker.Check(ctx, checkCfg.Config)
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// osFiles is the real file system.
type osFiles struct{}

func (osFiles) ReadFile(path string) ([]byte, error)     { return os.ReadFile(path) }
func (osFiles) WriteFile(path string, data []byte) error { return writeAtomic(path, data) }

// writeAtomic writes data to a temporary file in the same directory and
// renames it over path, so HAProxy never reads a half-written file.
func writeAtomic(path string, data []byte) error {
	if err := fsutil.WriteAtomic(path, data, 0o644, -1, -1); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
