// Package haproxyconf turns a service spec into haproxy.cfg and checks the
// result with the real haproxy binary. It is the only package that knows
// config-parser, so the parser can be swapped without touching the rest.
package haproxyconf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	parser "github.com/haproxytech/config-parser/v5"
	"github.com/haproxytech/config-parser/v5/common"
	"github.com/haproxytech/config-parser/v5/options"
	"github.com/haproxytech/config-parser/v5/params"
	"github.com/haproxytech/config-parser/v5/parsers/actions"
	httpactions "github.com/haproxytech/config-parser/v5/parsers/http/actions"
	"github.com/haproxytech/config-parser/v5/types"

	"github.com/trackrouter/trackrouter/weights"
)

// DefaultBase is the global and defaults part of haproxy.cfg used when the
// user passes no base config. Each line is there for a measured reason:
// idle-close-on-response made reloads under keep-alive load lose 0 requests,
// hard-stop-after bounds old workers, redispatch and retries send a request
// to another track when a server refuses the connection.
const DefaultBase = `global
  hard-stop-after 30s
  log stderr format raw local0 notice

defaults trackrouter
  mode http
  log global
  option idle-close-on-response
  option redispatch 1
  retries 3
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 10s
  timeout check 2s
`

// ResolversName is the resolvers section the rendered servers use, so that a
// track Service created after HAProxy started is picked up without a reload.
const ResolversName = "trackrouter"

// Options are the render settings that are not part of the spec.
type Options struct {
	// Base is a haproxy.cfg whose sections are kept; the generated frontend,
	// backends and resolvers are added to it. Empty means DefaultBase.
	Base string
	// Namespace of the track Services; empty means the spec's ConfigMap
	// namespace, or "default".
	Namespace string
	// ClusterDomain of the track Services; empty means "cluster.local".
	ClusterDomain string
	// Bind is the frontend's listen address; empty means ":<port>".
	Bind string
	// GroupsMap, when set, is the path of a map file (see GroupsMap) that
	// routes header groups, instead of one ACL per group: the sidecar then
	// changes groups through the Runtime API, without a reload.
	GroupsMap string
	// MetricsBind, when set, adds a frontend on this [host]:port serving
	// HAProxy's built-in Prometheus exporter at /metrics: requests,
	// responses by status class and response times per backend and per
	// server, that is per track. Empty means no such frontend.
	MetricsBind string
	// LatencyLog, when set, is the path of a unix datagram socket to which
	// the frontend sends one raw line per request (LatencyFormat): the
	// backend, the server (the track), the status, and the Ta and Tr
	// timers. The sidecar reads it for the latency quantiles of the canary
	// analysis. Empty means no request log.
	LatencyLog string
	// LatencyFD, when above 2, is a file descriptor HAProxy inherits (a
	// pipe) to which the frontend writes the same lines instead: one
	// write(2) per request, about half of what a datagram costs HAProxy
	// (BenchmarkMeasuringCost), with a reader that never blocks it (the
	// pipe is non-blocking: a full pipe drops lines, never requests). It
	// wins over LatencyLog.
	LatencyFD int
	// LatencySample, above 1, logs one request in LatencySample (HAProxy's
	// log sampling): the latency quantiles get fewer samples, HAProxy
	// spends that much less on the log. The counts are not sampled.
	LatencySample int
}

// LatencyFormat is the request log line LatencyLog receives: backend,
// server, status, total active time (Ta) and the server's response time
// (Tr, -1 when it sent no response), in milliseconds.
const LatencyFormat = "%b %s %ST %Ta %Tr"

// MetricsFrontend names the exporter's frontend; a DNS-1035 service name
// (no '_') cannot take it.
const MetricsFrontend = "trackrouter_metrics"

// cookieVar holds, per request, the affinity cookie the client sent.
const cookieVar = "txn.trackrouter_cookie"

// Rendered is a spec rendered for HAProxy: the bytes to write, and as typed
// data the parts that change at runtime (weights, groups map entries) and a
// stamp that names everything else.
type Rendered struct {
	// Config is haproxy.cfg.
	Config []byte
	// Stamp is "trackrouter:" and a hash of the config with every weight
	// left out (and, in map mode, the map entries, which live in another
	// file). It is the global description, which HAProxy reports in
	// "show info": equal stamps mean HAProxy runs this config's structure,
	// and only weights and map entries can differ, which the Runtime API
	// changes without a reload.
	Stamp string
	// Weights is every server's weight.
	Weights map[ServerKey]int
	// Map is the groups map file (Options.GroupsMap), nil otherwise.
	Map []byte
	// Groups is Map as entries: lowercased header value to backend.
	Groups map[string]string
}

// StampPrefix starts every stamp.
const StampPrefix = "trackrouter:"

// baseHasDescription: the base config may set a description of its own.
func baseHasDescription(opt Options) bool {
	base := opt.Base
	if base == "" {
		base = DefaultBase
	}
	return strings.Contains(base, "description")
}

// stampPlaceholder is the description while the stamp is computed.
const stampPlaceholder = StampPrefix + "000000000000"

// setWeights is cfg with the weight of every track server of s's backends
// set to weight(backend, track): the stamp hashes cfg with every one 1.
// A server of the user's base config keeps its weight (a change of it
// needs a reload).
func setWeights(cfg []byte, s *weights.Spec, weight func(backend, track string) int) []byte {
	out := make([]byte, 0, len(cfg))
	backend := ""
	for _, line := range bytes.SplitAfter(cfg, []byte("\n")) {
		trimmed := bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != ' ' && line[0] != '\t' && len(trimmed) > 0 {
			// A section header: "backend NAME [from DEFAULTS]" of one of the
			// spec's backends, or another section.
			backend = ""
			if f := bytes.Fields(trimmed); len(f) >= 2 && string(f[0]) == "backend" {
				if _, ok := s.Backends[string(f[1])]; ok {
					backend = string(f[1])
				}
			}
		}
		if backend != "" {
			if f := bytes.Fields(trimmed); len(f) >= 5 && string(f[0]) == "server" && string(f[3]) == "weight" {
				if _, track := s.Backends[backend][string(f[1])]; track {
					old := " weight " + string(f[4]) + " "
					if i := bytes.Index(line, []byte(old)); i >= 0 {
						out = append(out, line[:i]...)
						out = append(out, " weight "+strconv.Itoa(weight(backend, string(f[1])))+" "...)
						out = append(out, line[i+len(old):]...)
						continue
					}
				}
			}
		}
		out = append(out, line...)
	}
	return out
}

// Render returns haproxy.cfg for s: the base config, a resolvers section,
// one frontend routing on the header, and one backend per spec backend with
// one weighted server per track. The same spec and options give the same bytes.
func Render(s *weights.Spec, opt Options) (*Rendered, error) {
	// One rendering (config-parser is most of a render's cost: a second
	// one for the stamp doubled a weight edit's time on a large spec). The
	// stamp hashes it with the track servers' weights set to 1 and the
	// description left as a placeholder of the stamp's length, so that a
	// weight edit keeps it; the placeholder is then replaced.
	key, keyErr := structureKey(s)
	if keyErr == nil {
		if r := reweighted(s, opt, key); r != nil {
			return r, nil
		}
	}
	cfg, err := render(s, opt, stampPlaceholder)
	if err != nil {
		return nil, err
	}
	// The stamp's input is the rendering without the description and with
	// every track server's weight 1, as it has been since stamps exist (a
	// new formula would reload every HAProxy on upgrade and fail every
	// user's golden files). A base config with a description of its own
	// is rendered a second time without the stamp, as before.
	var structure []byte
	if line := []byte("  description " + stampPlaceholder + "\n"); !baseHasDescription(opt) && bytes.Count(cfg, line) == 1 {
		structure = bytes.Replace(cfg, line, nil, 1)
	} else if structure, err = render(s, opt, ""); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(setWeights(structure, s, func(string, string) int { return 1 }))
	stamp := StampPrefix + hex.EncodeToString(sum[:6])
	cfg = bytes.Replace(cfg, []byte(stampPlaceholder), []byte(stamp), 1)
	out := &Rendered{Config: cfg, Stamp: stamp, Weights: make(map[ServerKey]int)}
	for name, b := range s.Backends {
		for track, w := range b {
			out.Weights[ServerKey{name, track}] = w
		}
	}
	if opt.GroupsMap != "" {
		out.Map = GroupsMap(s)
		out.Groups = ParseGroupsMap(out.Map)
	}
	if keyErr == nil {
		reuse.Lock()
		if len(reuse.last) >= 64 {
			clear(reuse.last)
		}
		reuse.last[reuseKey{s.Service, opt}] = &reusable{key: key, r: out}
		reuse.Unlock()
	}
	return out, nil
}

// reuse keeps each service's last full rendering. A spec that differs from
// it only in weights is rendered by setting the new weights in its text:
// config-parser made a weight edit of a 50-backend spec take ~10 ms of
// CPU, and a weight edit is the change the sidecar must make fastest.
// TestReweightedIsRendered checks that both ways give the same bytes.
var reuse = struct {
	sync.Mutex
	last map[reuseKey]*reusable
}{last: map[reuseKey]*reusable{}}

// reuseKey: a service rendered with some options (the sidecar's loop and
// its background check render with their own).
type reuseKey struct {
	service string
	opt     Options
}

// reweights counts renderings made the fast way (tests).
var reweights atomic.Int64

type reusable struct {
	key []byte // structureKey of the spec
	r   *Rendered
}

// structureKey is s without its weights (and warnings, which do not
// render), canonically: equal keys render equal configs but for weights.
func structureKey(s *weights.Spec) ([]byte, error) {
	c := *s
	c.Warnings = nil
	c.Backends = make(map[string]weights.Backend, len(s.Backends))
	for name, b := range s.Backends {
		zero := make(weights.Backend, len(b))
		for track := range b {
			zero[track] = 0
		}
		c.Backends[name] = zero
	}
	return json.Marshal(&c)
}

// reweighted is the last rendering of s's service with s's weights, when
// only weights changed since; nil otherwise.
func reweighted(s *weights.Spec, opt Options, key []byte) *Rendered {
	reuse.Lock()
	l := reuse.last[reuseKey{s.Service, opt}]
	reuse.Unlock()
	if l == nil || !bytes.Equal(l.key, key) {
		return nil
	}
	out := &Rendered{Stamp: l.r.Stamp, Map: l.r.Map, Groups: l.r.Groups, Weights: make(map[ServerKey]int)}
	for name, b := range s.Backends {
		for track, w := range b {
			out.Weights[ServerKey{name, track}] = w
		}
	}
	out.Config = setWeights(l.r.Config, s, func(backend, track string) int { return s.Backends[backend][track] })
	reweights.Add(1)
	return out
}

// parserMu serializes config-parser: v5.1.6 writes a package variable
// (parser.DefaultSectionName) on every parse of a defaults section, so two
// renders at once race (the sidecar renders in its loop and in the
// background check; the race detector found it with several sidecars in one
// test binary).
var parserMu sync.Mutex

func render(s *weights.Spec, opt Options, stamp string) ([]byte, error) {
	parserMu.Lock()
	defer parserMu.Unlock()
	base := opt.Base
	if base == "" {
		base = DefaultBase
	}
	p, err := parser.New(options.String(base))
	if err != nil {
		return nil, fmt.Errorf("parse base config: %w", err)
	}
	r := renderer{p: p, spec: s, opt: opt}
	if stamp != "" {
		// The description of the user's base config, if any, gives way.
		r.set(p.Set(parser.Global, parser.GlobalSectionName, "description", &types.StringC{Value: stamp}))
	}
	if err := r.render(); err != nil {
		return nil, fmt.Errorf("render %s: %w", s.Service, err)
	}
	return []byte(header(s) + strings.TrimLeft(p.String(), "\n")), nil
}

// HeaderPrefix starts the first line of every rendered file: what the
// sidecar looks for before it overwrites a file.
const HeaderPrefix = "# Generated by trackrouter"

// header is the first line of every rendered file.
func header(s *weights.Spec) string {
	return HeaderPrefix + " for service " + s.Service + ". Edit the service spec, not this file.\n"
}

type renderer struct {
	p    parser.Parser
	spec *weights.Spec
	opt  Options
	err  error
}

// set records the first error of a sequence of parser calls.
func (r *renderer) set(err error) {
	if r.err == nil && err != nil {
		r.err = err
	}
}

func (r *renderer) render() error {
	s := r.spec
	bind := r.opt.Bind
	if bind == "" {
		bind = ":" + strconv.Itoa(s.Port)
	}
	if err := checkBind(bind); err != nil {
		return err
	}
	if err := r.create(parser.Resolvers, ResolversName); err != nil {
		return err
	}
	r.set(r.p.Set(parser.Resolvers, ResolversName, "parse-resolv-conf", &types.Enabled{}))
	r.set(r.p.Set(parser.Resolvers, ResolversName, "hold valid", &types.StringC{Value: "10s"}))
	// A track's address is a ClusterIP, which does not change while its
	// Service lives: when the cluster DNS does not answer (times out,
	// refuses, fails), the address known is kept. HAProxy's default (30 s)
	// took every server's address away 30 s into a DNS outage: 503 for
	// every request on every HAProxy pod (measured on 2.6). A name that
	// no longer exists (NXDOMAIN: the Service deleted) still goes after
	// HAProxy's 30 s.
	for _, status := range []string{"timeout", "refused", "other"} {
		r.set(r.p.Set(parser.Resolvers, ResolversName, "hold "+status, &types.StringC{Value: "1h"}))
	}

	fe := s.Service
	if err := r.create(parser.Frontends, fe); err != nil {
		return err
	}
	r.set(r.p.Set(parser.Frontends, fe, "mode", &types.StringC{Value: "http"}))
	r.set(r.p.Insert(parser.Frontends, fe, "bind", types.Bind{Path: bind}))
	if cond := trustedCond(s); cond != "" {
		// From a caller not trusted, the group header (and the affinity
		// header, a user id the caller picks) is removed before routing:
		// it is served as the default group. del-header removes every
		// occurrence, whatever the case of its name.
		headers := []string{s.Header}
		if a := s.Affinity; a != nil && a.Header != "" && !strings.EqualFold(a.Header, s.Header) {
			headers = append(headers, a.Header)
		}
		for _, h := range headers {
			r.set(r.p.Insert(parser.Frontends, fe, "http-request", &httpactions.DelHeader{Name: h, Cond: "unless", CondTest: cond}))
		}
	}
	if r.opt.GroupsMap != "" {
		if err := CheckMapPath(r.opt.GroupsMap); err != nil {
			return err
		}
		// Lowercased header, exact lookup: the map's keys are lowercased
		// group values. No match gives the default backend.
		r.set(r.p.Insert(parser.Frontends, fe, "use_backend", types.UseBackend{
			Name: fmt.Sprintf("%%[req.fhdr(%s),lower,map(%s,%s)]", s.Header, r.opt.GroupsMap, s.Default),
		}))
	}
	for _, value := range s.GroupValues() {
		if r.opt.GroupsMap != "" {
			break
		}
		// The group value and the header name are validated tokens
		// ([A-Za-z0-9._-]); -i matches them case-insensitively. fhdr takes the
		// last occurrence whole, so a value with a comma matches nothing.
		r.set(r.p.Insert(parser.Frontends, fe, "use_backend", types.UseBackend{
			Name:     s.Groups[value],
			Cond:     "if",
			CondTest: fmt.Sprintf("{ req.fhdr(%s) -i %s }", s.Header, value),
		}))
	}
	r.set(r.p.Set(parser.Frontends, fe, "default_backend", &types.StringC{Value: s.Default}))
	if path, fd := r.opt.LatencyLog, r.opt.LatencyFD; path != "" || fd > 0 {
		switch {
		case fd > 0 && (fd < 3 || fd > 1023):
			return fmt.Errorf("latency log file descriptor %d: want 3-1023 (0-2 are HAProxy's standard streams)", fd)
		case fd > 0:
			path = fmt.Sprintf("fd@%d", fd)
		case !mapPathRE.MatchString(path):
			return fmt.Errorf("latency log socket %q: use an absolute path of letters, digits, '_', '.', '-' and '/'", path)
		}
		// A proxy with log lines of its own inherits none: keep global's.
		r.set(r.p.Insert(parser.Frontends, fe, "log", types.Log{Global: true}))
		l := types.Log{Address: path, Length: 512, Format: "raw", Facility: "local0", Level: "info"}
		if n := r.opt.LatencySample; n > 1 {
			l.SampleRange, l.SampleSize = "1", int64(n)
		}
		r.set(r.p.Insert(parser.Frontends, fe, "log", l))
		r.set(r.p.Set(parser.Frontends, fe, "log-format", &types.StringC{Value: `"` + LatencyFormat + `"`}))
		// A connection without a request (a probe) is no latency.
		r.set(r.p.Set(parser.Frontends, fe, "option dontlognull", &types.SimpleOption{}))
	}
	if mb := r.opt.MetricsBind; mb != "" {
		if err := checkBind(mb); err != nil {
			return fmt.Errorf("metrics %w", err)
		}
		if portNumber(mb) == portNumber(bind) {
			return fmt.Errorf("metrics bind address %q: the service's port %s; give HAProxy's metrics a port of their own", mb, port(bind))
		}
		if err := r.create(parser.Frontends, MetricsFrontend); err != nil {
			return err
		}
		r.set(r.p.Set(parser.Frontends, MetricsFrontend, "mode", &types.StringC{Value: "http"}))
		r.set(r.p.Insert(parser.Frontends, MetricsFrontend, "bind", types.Bind{Path: mb}))
		r.set(r.p.Insert(parser.Frontends, MetricsFrontend, "http-request", &actions.UseService{Name: "prometheus-exporter", Cond: "if", CondTest: "{ path /metrics }"}))
	}

	for _, name := range s.BackendNames() {
		r.backend(name)
	}
	return r.err
}

func (r *renderer) create(section parser.Section, name string) error {
	existing, err := r.p.SectionsGet(section)
	if err == nil {
		for _, e := range existing {
			if e == name {
				return fmt.Errorf("the base config already has a %s section named %q; remove it, trackrouter generates it", section, name)
			}
		}
	}
	return r.p.SectionsCreate(section, name)
}

func (r *renderer) backend(name string) {
	s := r.spec
	if err := r.create(parser.Backends, name); err != nil {
		r.set(err)
		return
	}
	r.set(r.p.Set(parser.Backends, name, "mode", &types.StringC{Value: "http"}))
	a := s.Affinity
	switch {
	case a != nil && a.Header != "":
		// Users by a consistent hash of their id, with the weights: a
		// weight change moves only the users it must, and a weight of 0
		// takes the server out of the hash. Without the header, HAProxy
		// balances by round robin.
		r.set(r.p.Set(parser.Backends, name, "balance", &types.Balance{Algorithm: "hdr", Params: &params.BalanceHdr{Name: a.Header}}))
		r.set(r.p.Set(parser.Backends, name, "hash-type", &types.HashType{Method: "consistent"}))
	default:
		r.set(r.p.Set(parser.Backends, name, "balance", &types.Balance{Algorithm: "roundrobin"}))
	}
	if a != nil && a.Cookie != "" {
		r.cookie(name, a)
	}
	ns := r.opt.Namespace
	if ns == "" {
		ns = s.Source.Namespace
	}
	if ns == "" {
		ns = "default"
	}
	domain := r.opt.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	// Both go into every server line: checked tokens only.
	if !weights.IsNamespace(ns) {
		r.set(fmt.Errorf("namespace %q is not a DNS-1123 label", ns))
		return
	}
	if !weights.IsDomain(domain) {
		r.set(fmt.Errorf("cluster domain %q is not a DNS domain", domain))
		return
	}
	b := s.Backends[name]
	for _, track := range b.Tracks() {
		w := b[track]
		r.set(r.p.Insert(parser.Backends, name, "server", types.Server{
			Name:    track,
			Address: s.TrackAddress(track, ns, domain),
			// init-addr last,libc,none lets haproxy -c and start-up pass where
			// the cluster's names do not resolve; the resolvers fill them in.
			// Built, not parsed: params.ParseServerOptions tries every
			// option's parser on each word, and took half of the render of a
			// 50-backend spec.
			Params: serverParams(w, cookieParam(s, track)),
		}))
	}
}

var mapPathRE = regexp.MustCompile(`^/[A-Za-z0-9_./-]+$`)

// GroupsMap returns the map file for Options.GroupsMap: one line per group,
// the lowercased header value and its backend, sorted.
func GroupsMap(s *weights.Spec) []byte {
	var b strings.Builder
	for _, value := range s.GroupValues() {
		fmt.Fprintf(&b, "%s %s\n", strings.ToLower(value), s.Groups[value])
	}
	return []byte(b.String())
}

// ParseGroupsMap reads a map file written by GroupsMap.
func ParseGroupsMap(data []byte) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// checkBind accepts [host]:port, the only shapes the frontend needs; the value
// comes from a flag, not from the spec, but is still kept to a safe token.
func checkBind(bind string) error {
	i := strings.LastIndex(bind, ":")
	if i < 0 {
		return fmt.Errorf("bind address %q: want [host]:port", bind)
	}
	port, err := strconv.Atoi(bind[i+1:])
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("bind address %q: port must be 1-65535", bind)
	}
	for _, c := range bind[:i] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]*", c)) {
			return fmt.Errorf("bind address %q: unexpected character %q", bind, c)
		}
	}
	return nil
}

// trustedCond is the ACL of the callers trusted to say their group (and
// their affinity), "{ src A B ... }" in net/netip's canonical forms; ""
// when every caller is.
func trustedCond(s *weights.Spec) string {
	if s.TrustAny || len(s.TrustedSources) == 0 {
		return ""
	}
	srcs := make([]string, len(s.TrustedSources))
	for i, p := range s.TrustedSources {
		srcs[i] = p.String()
	}
	return "{ src " + strings.Join(srcs, " ") + " }"
}

// cookie makes a backend keep each client on the track that served it
// first: HAProxy inserts a cookie naming the server (the track) on the
// first response, production included. Two traps are handled here: a
// server at weight 0 still serves its cookie holders, so ignore-persist
// drops persistence to a server whose live weight is 0 (srv_weight, so a
// runtime weight change needs no reload); and HAProxy does not set the
// cookie again when it ignored it, so a response from another server than
// the client's cookie names sets it.
func (r *renderer) cookie(backend string, a *weights.Affinity) {
	c := &types.Cookie{Name: a.Cookie, Type: "insert", Indirect: true, Nocache: true, Secure: a.Secure}
	attrs := "; path=/"
	if a.Secure {
		attrs += "; Secure"
	}
	if a.MaxAge > 0 {
		c.Attr = []string{fmt.Sprintf("Max-Age=%d", a.MaxAge)}
		attrs += fmt.Sprintf("; Max-Age=%d", a.MaxAge)
	}
	r.set(r.p.Set(parser.Backends, backend, "cookie", c))
	if cond := trustedCond(r.spec); cond != "" {
		// A caller not trusted is not kept on the track its cookie names:
		// it could name the canary (the group header is removed for it,
		// the cookie is ignored).
		r.set(r.p.Insert(parser.Backends, backend, "ignore-persist", types.IgnorePersist{Cond: "unless", CondTest: cond}))
	}
	for _, track := range r.spec.Backends[backend].Tracks() {
		r.set(r.p.Insert(parser.Backends, backend, "ignore-persist", types.IgnorePersist{Cond: "if",
			CondTest: fmt.Sprintf("{ req.cook(%s) -m str %s } { srv_weight(%s/%s) eq 0 }", a.Cookie, track, backend, track)}))
	}
	r.set(r.p.Insert(parser.Backends, backend, "http-request", &actions.SetVar{VarScope: "txn", VarName: strings.TrimPrefix(cookieVar, "txn."),
		Expr: common.Expression{Expr: []string{fmt.Sprintf("req.cook(%s)", a.Cookie)}}, Cond: "if", CondTest: fmt.Sprintf("{ req.cook(%s) -m found }", a.Cookie)}))
	r.set(r.p.Insert(parser.Backends, backend, "http-response", &httpactions.AddHeader{Name: "Set-Cookie",
		Fmt:  fmt.Sprintf("\"%s=%%[srv_name]%s\"", a.Cookie, attrs),
		Cond: "if", CondTest: fmt.Sprintf("{ var(%s) -m found } { srv_name -m found } !{ srv_name,strcmp(%s) eq 0 }", cookieVar, cookieVar)}))
}

// cookieParam is a server's cookie value under cookie affinity: its track.
func cookieParam(s *weights.Spec, track string) string {
	if s.Affinity == nil || s.Affinity.Cookie == "" {
		return ""
	}
	return track
}

// serverParams are a track server's options: "weight W check inter 2s fall
// 3 rise 2 resolvers R init-addr last,libc,none [cookie C]".
func serverParams(w int, cookie string) []params.ServerOption {
	opts := []params.ServerOption{
		&params.ServerOptionValue{Name: "weight", Value: strconv.Itoa(w)},
		&params.ServerOptionWord{Name: "check"},
		&params.ServerOptionValue{Name: "inter", Value: "2s"},
		&params.ServerOptionValue{Name: "fall", Value: "3"},
		&params.ServerOptionValue{Name: "rise", Value: "2"},
		&params.ServerOptionValue{Name: "resolvers", Value: ResolversName},
		&params.ServerOptionValue{Name: "init-addr", Value: "last,libc,none"},
	}
	if cookie != "" {
		opts = append(opts, &params.ServerOptionValue{Name: "cookie", Value: cookie})
	}
	return opts
}

// port is the port of a [host]:port; portNumber is it as a number (so
// 018480 is 18480), -1 when it is none.
func port(bind string) string { return bind[strings.LastIndex(bind, ":")+1:] }

func portNumber(bind string) int {
	n, err := strconv.Atoi(port(bind))
	if err != nil {
		return -1
	}
	return n
}

// ForOfflineCheck returns cfg as haproxy -c should check it outside the
// cluster (trackctl in CI): the servers' "init-addr last,libc,none" becomes
// "init-addr none", so that haproxy -c does not look up the cluster's names
// with libc, each lookup waiting for the resolver's timeout (5 s per name
// where DNS does not answer). Nothing else changes: the check covers every
// other token of the config the sidecar runs, which the sidecar checks in
// the cluster again as it is.
func ForOfflineCheck(cfg []byte) []byte {
	return bytes.ReplaceAll(cfg, []byte(" init-addr last,libc,none"), []byte(" init-addr none"))
}

// CheckBind checks a [host]:port the way the frontend's bind is checked.
func CheckBind(bind string) error { return checkBind(bind) }

// SamePort reports whether two [host]:port addresses use the same port.
func SamePort(a, b string) bool {
	return strings.Contains(a, ":") && strings.Contains(b, ":") && portNumber(a) == portNumber(b) && portNumber(a) > 0
}

// CheckMapPath refuses a groups map path that haproxy.cfg cannot hold as a
// plain token.
func CheckMapPath(path string) error {
	if !mapPathRE.MatchString(path) {
		return fmt.Errorf("groups map path %q: use an absolute path of letters, digits, '_', '.', '-' and '/'", path)
	}
	return nil
}
