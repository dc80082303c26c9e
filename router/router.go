// Package router is the trackrouter sidecar: it takes each new version of a
// service spec, validates and renders it, and applies it to HAProxy with the
// least disruptive change: nothing when the config is the same, Runtime API
// weight updates when only weights changed, and a checked, confirmed hot
// reload otherwise. HAProxy never sees a config that failed validation.
package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/weights"
)

// Update is one version of the spec, as a source read it.
type Update struct {
	Data   []byte         // service.yaml content
	Source weights.Source // where it came from, for error messages
	Err    error          // the source could not read the spec (file missing, ConfigMap deleted)
}

// Rejecter is told about every spec that was rejected, e.g. to emit a
// Kubernetes Warning Event on the ConfigMap.
type Rejecter interface {
	Rejected(src weights.Source, err error)
}

// Router applies spec updates to HAProxy. Submit may be called from any
// goroutine; Run owns every interaction with HAProxy.
type Router struct {
	ConfigPath  string // haproxy.cfg that HAProxy reads
	Render      haproxyconf.Options
	Checker     haproxyconf.Checker
	HAProxy     HAProxy
	Metrics     *Metrics
	Log         *slog.Logger
	Rejecter    Rejecter      // optional
	MinInterval time.Duration // between two applies; bursts of edits coalesce

	mu      sync.Mutex
	latest  *Update
	wake    chan struct{}
	applied atomic.Pointer[[]byte] // the live config, for readers outside Run

	// Owned by Run.
	live    []byte  // the config HAProxy runs, nil before the first apply
	liveMap []byte  // the groups map HAProxy runs (map mode), nil otherwise
	failed  []byte  // config and map whose reload failed: not retried until they change
	retry   *Update // an update to apply again: HAProxy was unreachable
	retryAt time.Time
	backoff time.Duration // doubles per failed retry, 1s to 30s
	invalid *Update       // the last rejected update: a resync of it is not rejected again
}

// Submit hands the router a new version of the spec. Only the latest
// version is kept: a burst of edits ends in one apply of the final state.
func (r *Router) Submit(u Update) {
	r.mu.Lock()
	r.latest = &u
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Router) peek() *Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

func (r *Router) take() *Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.latest
	r.latest = nil
	return u
}

// Applied returns the config HAProxy runs as far as the router applied it,
// or nil before the first apply.
func (r *Router) Applied() []byte {
	if p := r.applied.Load(); p != nil {
		return *p
	}
	return nil
}

// Ready reports whether HAProxy runs with a valid config that the router applied.
func (r *Router) Ready() bool { return r.Applied() != nil && r.HAProxy.Alive() }

// Run applies updates until ctx ends. With an existing config file from an
// earlier run it starts from that file, so a sidecar restart that renders
// the same config changes nothing.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	wake := r.wake
	r.mu.Unlock()
	if b, err := os.ReadFile(r.ConfigPath); err == nil && r.HAProxy.Alive() {
		if _, isSupervisor := r.HAProxy.(*Supervisor); !isSupervisor {
			r.live = b
			if r.Render.GroupsMap != "" {
				r.liveMap, _ = os.ReadFile(r.Render.GroupsMap)
			}
		}
	}
	health := time.NewTicker(time.Second)
	defer health.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-health.C:
			r.restartIfDown(ctx)
			if u := r.retry; u != nil && r.peek() == nil && time.Now().After(r.retryAt) {
				r.retry = nil
				r.apply(ctx, u)
			}
			continue
		case <-wake:
		}
		if wait := r.MinInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		last = time.Now()
		if u := r.take(); u != nil {
			r.apply(ctx, u)
		}
	}
}

// restartIfDown starts a supervised HAProxy again after it exited.
func (r *Router) restartIfDown(ctx context.Context) {
	if r.live == nil || r.HAProxy.Alive() {
		return
	}
	r.Log.Warn("haproxy is not running; starting it with the last good config", "config", r.ConfigPath)
	if err := r.HAProxy.Reload(ctx); err != nil {
		r.Log.Error("restart haproxy", "err", err)
		r.Metrics.Reloads.WithLabelValues("failure").Inc()
		return
	}
	r.Metrics.Reloads.WithLabelValues("success").Inc()
}

// apply takes one spec version to HAProxy.
func (r *Router) apply(ctx context.Context, u *Update) {
	start := time.Now()
	if r.invalid != nil && u.Err == nil && r.invalid.Err == nil && bytes.Equal(u.Data, r.invalid.Data) {
		r.Log.Debug("spec unchanged since it was rejected", "source", u.Source.String())
		return
	}
	spec, cfg, groups, err := r.prepare(u)
	if err != nil {
		r.invalid = u
		r.reject(u, err)
		return
	}
	r.invalid = nil
	if bytes.Equal(cfg, r.live) && bytes.Equal(groups, r.liveMap) {
		if r.Applied() == nil {
			// HAProxy already runs this config (an init container wrote
			// it, or an earlier sidecar did): nothing to change, ready.
			w, _ := haproxyconf.ServerWeights(cfg)
			r.done(spec, cfg, groups, w, start, "none", "already live")
			return
		}
		r.Log.Debug("spec unchanged: nothing to apply", "source", u.Source.String())
		return
	}
	if bytes.Equal(stateKey(cfg, groups), r.failed) {
		r.Log.Debug("spec unchanged since its reload failed: not retried", "source", u.Source.String())
		return
	}
	oldWeights, oldMasked := haproxyconf.ServerWeights(r.live)
	newWeights, newMasked := haproxyconf.ServerWeights(cfg)
	if r.live != nil && bytes.Equal(oldMasked, newMasked) {
		err = r.applyRuntime(ctx, cfg, groups, oldWeights, newWeights)
		if err == nil {
			r.done(spec, cfg, groups, newWeights, start, "runtime", changes(oldWeights, newWeights, r.liveMap, groups))
			return
		}
		// The Runtime API failed (e.g. HAProxy restarted): a reload
		// carries the weights in the file.
		r.Log.Warn("runtime weight update failed; reloading instead", "err", err)
	}
	if err := r.reload(ctx, spec, cfg, groups); err != nil {
		if errors.Is(err, ErrUnavailable) {
			r.backoff = min(max(2*r.backoff, time.Second), 30*time.Second)
			r.retry, r.retryAt = u, time.Now().Add(r.backoff)
			err = fmt.Errorf("%w (retrying in %s)", err, r.backoff)
		} else {
			r.failed = stateKey(cfg, groups)
		}
		r.Log.Error("apply failed; "+r.stays(), "service", spec.Service, "err", err)
		return
	}
	why := "structural change"
	if r.live == nil {
		why = "first config"
	}
	r.done(spec, cfg, groups, newWeights, start, "reload", why)
}

// stateKey identifies a config and its groups map together.
func stateKey(cfg, groups []byte) []byte {
	return append(append(append([]byte{}, cfg...), 0), groups...)
}

// prepare parses, validates and renders one update. haproxy -c runs only
// before a reload: a weights-only change keeps a config HAProxy already runs.
// In map mode it also returns the groups map.
func (r *Router) prepare(u *Update) (spec *weights.Spec, cfg, groups []byte, err error) {
	if u.Err != nil {
		return nil, nil, nil, u.Err
	}
	spec, err = weights.ParseService(u.Source, u.Data)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err = haproxyconf.Render(spec, r.Render)
	if err != nil {
		return nil, nil, nil, err
	}
	if r.Render.GroupsMap != "" {
		groups = haproxyconf.GroupsMap(spec)
	}
	return spec, cfg, groups, nil
}

func (r *Router) reject(u *Update, err error) {
	r.Metrics.Rejected.Inc()
	r.Log.Error("spec rejected; "+r.stays(), "source", u.Source.String(), "err", err.Error())
	if r.Rejecter != nil {
		r.Rejecter.Rejected(u.Source, err)
	}
}

// stays says what HAProxy serves after a failed apply.
func (r *Router) stays() string {
	if r.live == nil {
		return "no config applied yet: not ready until one is"
	}
	return "the last good config stays"
}

func (r *Router) done(spec *weights.Spec, cfg, groups []byte, w map[haproxyconf.ServerKey]int, start time.Time, how, why string) {
	r.live, r.liveMap, r.failed = cfg, groups, nil
	r.backoff = 0
	r.applied.Store(&cfg)
	r.Metrics.setWeights(w)
	r.Log.Info("applied", "service", spec.Service, "how", how, "why", why, "duration", time.Since(start).Round(time.Microsecond).String())
}

// applyRuntime sets every changed weight and group through the Runtime
// API, then writes the same map and config to disk so a later reload keeps
// them.
func (r *Router) applyRuntime(ctx context.Context, cfg, groups []byte, old, new map[haproxyconf.ServerKey]int) error {
	for _, k := range sortedKeys(new) {
		if old[k] == new[k] {
			continue
		}
		if err := r.HAProxy.SetWeight(ctx, k.Backend, k.Server, new[k]); err != nil {
			return err
		}
	}
	if !bytes.Equal(groups, r.liveMap) {
		if err := r.HAProxy.SetGroups(ctx, r.Render.GroupsMap, haproxyconf.ParseGroupsMap(r.liveMap), haproxyconf.ParseGroupsMap(groups)); err != nil {
			return err
		}
		if err := writeAtomic(r.Render.GroupsMap, groups); err != nil {
			return err
		}
	}
	if err := writeAtomic(r.ConfigPath, cfg); err != nil {
		return err
	}
	r.Metrics.RuntimeUpdates.Inc()
	return nil
}

// reload checks cfg with haproxy -c, puts it (and in map mode the groups
// map) in place and reloads. When the reload fails the last good files go
// back and are reloaded.
func (r *Router) reload(ctx context.Context, spec *weights.Spec, cfg, groups []byte) error {
	if err := r.check(ctx, spec, cfg, groups); err != nil {
		return fmt.Errorf("haproxy -c: %w", err)
	}
	if err := r.write(cfg, groups); err != nil {
		return err
	}
	err := r.HAProxy.Reload(ctx)
	if err == nil {
		r.Metrics.Reloads.WithLabelValues("success").Inc()
		return nil
	}
	r.Metrics.Reloads.WithLabelValues("failure").Inc()
	if r.live == nil {
		return err
	}
	if werr := r.write(r.live, r.liveMap); werr != nil {
		return errors.Join(err, fmt.Errorf("restore last good config: %w", werr))
	}
	if rerr := r.HAProxy.Reload(ctx); rerr != nil {
		r.Metrics.Reloads.WithLabelValues("failure").Inc()
		return errors.Join(err, fmt.Errorf("reload last good config: %w", rerr))
	}
	r.Metrics.Reloads.WithLabelValues("success").Inc()
	return fmt.Errorf("%w; the last good config was restored and reloaded", err)
}

// check runs haproxy -c on cfg. In map mode the config names the groups
// map's final path, which must not change before the check passes: the
// check runs on a copy rendered against a temporary map file.
func (r *Router) check(ctx context.Context, spec *weights.Spec, cfg, groups []byte) error {
	if groups == nil {
		return r.Checker.Check(ctx, cfg)
	}
	tmp, err := os.CreateTemp(filepath.Dir(r.Render.GroupsMap), ".groups.map-check-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(groups)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	opt := r.Render
	opt.GroupsMap = tmp.Name()
	checkCfg, err := haproxyconf.Render(spec, opt)
	if err != nil {
		return err
	}
	return r.Checker.Check(ctx, checkCfg)
}

// write puts the groups map (if any) and the config in place.
func (r *Router) write(cfg, groups []byte) error {
	if groups != nil {
		if err := writeAtomic(r.Render.GroupsMap, groups); err != nil {
			return err
		}
	}
	return writeAtomic(r.ConfigPath, cfg)
}

// writeAtomic writes data to a temporary file in the same directory and
// renames it over path, so HAProxy never reads a half-written file.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".haproxy.cfg-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// changes says in one line which weights and groups a runtime update changed.
func changes(old, new map[haproxyconf.ServerKey]int, oldMap, newMap []byte) string {
	var parts []string
	for _, k := range sortedKeys(new) {
		if old[k] != new[k] {
			parts = append(parts, fmt.Sprintf("%s %d->%d", k, old[k], new[k]))
		}
	}
	if len(parts) > 0 {
		parts[0] = "weights " + parts[0]
	}
	om, nm := haproxyconf.ParseGroupsMap(oldMap), haproxyconf.ParseGroupsMap(newMap)
	var groups []string
	for _, k := range slices.Sorted(maps.Keys(nm)) {
		if om[k] != nm[k] {
			groups = append(groups, fmt.Sprintf("%s %s->%s", k, orDash(om[k]), nm[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(om)) {
		if _, ok := nm[k]; !ok {
			groups = append(groups, fmt.Sprintf("%s %s->-", k, om[k]))
		}
	}
	if len(groups) > 0 {
		groups[0] = "groups " + groups[0]
	}
	return strings.Join(append(parts, groups...), ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys(m map[haproxyconf.ServerKey]int) []haproxyconf.ServerKey {
	keys := make([]haproxyconf.ServerKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys
}
