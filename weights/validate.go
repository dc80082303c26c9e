package weights

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

var (
	// version is also a label value, so it starts and ends alphanumeric.
	versionRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)
	// headerRE is the subset of HTTP token characters that is safe in haproxy.cfg.
	headerRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	groupRE  = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

const (
	maxNameLen    = 63  // DNS label, Service name, label value
	maxHeaderLen  = 128 // generous for a header name
	maxSubdomain  = 253
	podNameSuffix = 17 // "-<replicaset hash>-<pod suffix>" that Kubernetes appends
)

// validator checks a decoded spec and fills in defaults that depend on other
// fields. Errors point at the line of the field, or of its parent when the
// field is missing.
type validator struct {
	spec  *Spec
	file  string
	lines map[string]int
	errs  ErrorList
	// warnings: see Spec.Warnings.
	warnings ErrorList
}

func (v *validator) fail(field, format string, args ...any) {
	v.errs = append(v.errs, v.at(field, format, args...))
}

func (v *validator) warn(field, format string, args ...any) {
	v.warnings = append(v.warnings, v.at(field, format, args...))
}

// at is a FieldError on the line of field, or of its closest parent.
func (v *validator) at(field, format string, args ...any) *FieldError {
	line, ok := v.lines[field]
	for p := field; !ok && p != ""; {
		if i := strings.LastIndex(p, "."); i >= 0 {
			p = p[:i]
		} else {
			p = ""
		}
		line, ok = v.lines[p]
	}
	return &FieldError{File: v.file, Line: line, Field: clip(field), Msg: fmt.Sprintf(format, clipArgs(args)...)}
}

// lint finds what is valid but probably not meant, on a valid spec.
func (v *validator) lint() {
	s := v.spec
	used := make(map[string]bool)   // in some backend
	weighs := make(map[string]bool) // with a weight above 0 somewhere
	for _, b := range s.BackendNames() {
		backend := s.Backends[b]
		live := 0
		for _, w := range backend {
			if w > 0 {
				live++
			}
		}
		for _, track := range backend.Tracks() {
			used[track] = true
			t := s.Tracks[track]
			w := backend[track]
			if w > 0 {
				weighs[track] = true
			}
			if w == 0 || t.Replicas > 0 || t.Autoscaled || t.Address != "" {
				continue
			}
			if live == 1 {
				v.warn("backends."+b+"."+track, "track %s is the only one with weight in backend %s and has 0 replicas: every request of %s fails", track, b, b)
			} else {
				v.warn("backends."+b+"."+track, "track %s has weight %d in backend %s but 0 replicas: nothing serves that share, HAProxy sends it to the other tracks", track, w, b)
			}
		}
	}
	for _, track := range s.TrackNames() {
		switch {
		case !used[track]:
			v.warn("tracks."+track, "no backend sends requests to track %s (it still runs %d replicas)", track, s.Tracks[track].Replicas)
		case !weighs[track]:
			v.warn("tracks."+track, "track %s has weight 0 in every backend: it gets no request (it still runs %d replicas)", track, s.Tracks[track].Replicas)
		}
	}
	v.lintSums()
	v.lintTrust()
	if last := s.Stages[len(s.Stages)-1]; s.Tracks[last].Analysis != nil || len(s.Tracks[last].Gates) > 0 {
		v.warn("tracks."+last, "%s is the last stage: a release ends when it gets there, so its analysis and gates are never used (the last stage is the analysis' baseline); put them on the stage before it", last)
	}
	reached := map[string]bool{s.Default: true}
	for _, b := range s.Groups {
		reached[b] = true
	}
	for _, b := range s.BackendNames() {
		if !reached[b] {
			v.warn("backends."+b, "no group and not the default: no request reaches backend %s", b)
		}
	}
	slices.SortStableFunc(v.warnings, func(a, b *FieldError) int { return a.Line - b.Line })
}

// lintTrust warns about a range that makes the others pointless. A spec
// without trustedSources trusts every caller, as before the field existed:
// nothing that runs changes on an upgrade (the README says to set it).
func (v *validator) lintTrust() {
	s := v.spec
	mapped := netip.MustParsePrefix("::ffff:0.0.0.0/96")
	seen := map[netip.Prefix]bool{}
	for i, p := range s.TrustedSources {
		field := fmt.Sprintf("trustedSources[%d]", i)
		switch {
		case seen[p]:
			v.warn(field, "%s is listed twice", p)
		case p.Bits() == 0 && p.Addr().Is4():
			v.warn(field, "%s trusts every IPv4 caller; write any if that is meant", p)
		case p.Addr().Is6() && p.Overlaps(mapped):
			// HAProxy matches an IPv4 caller against IPv6 entries in its
			// IPv4-mapped form (::ffff:a.b.c.d): measured on 2.6.
			v.warn(field, "%s holds ::ffff:0.0.0.0/96, the IPv4-mapped addresses: HAProxy matches IPv4 callers against it, so it trusts IPv4 callers too (every one, for %s)", p, p)
		}
		seen[p] = true
	}
}

// lintSums warns about a backend whose weights do not sum to 100 while
// the spec otherwise thinks in percent (some backend sums to 100): weights
// are relative, so an edit of 95 to 50 beside a 5 gives 9.1%, not 5%. A
// backend with one track above 0 gets all of it whatever its sum, and
// small ratios (every weight at most 10: 1:1, 3:1) are meant as ratios.
func (v *validator) lintSums() {
	s := v.spec
	var odd []string
	percent := false
	for _, b := range s.BackendNames() {
		backend := s.Backends[b]
		if backend.Sum() == 100 {
			percent = true
			continue
		}
		live, most := 0, 0
		for _, w := range backend {
			if w > 0 {
				live++
			}
			most = max(most, w)
		}
		if live >= 2 && most > 10 {
			odd = append(odd, b)
		}
	}
	if len(odd) != 1 || !percent {
		return
	}
	b := odd[0]
	backend := s.Backends[b]
	var shares []string
	for _, track := range backend.Tracks() {
		shares = append(shares, track+" "+Percent(backend.Share(track)))
	}
	v.warn("backends."+b, "weights sum to %d, not 100 as in other backends: weights are relative, so backend %s gives %s", backend.Sum(), b, strings.Join(shares, ", "))
}

func (v *validator) validate() {
	s := v.spec
	switch {
	case s.Service == "":
		v.fail("service", "required: the service name, a DNS-1035 label such as account-service")
	case !isDNS1035(s.Service):
		v.fail("service", "%q is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters)", s.Service)
	}
	if s.Template == "" {
		s.Template = s.Service
	} else if !isSubdomain(s.Template, maxSubdomain) {
		v.fail("template", "%q is not a valid PodTemplate name (a DNS-1123 subdomain)", s.Template)
	}
	switch {
	case s.Port == 0 && v.lines["port"] == 0:
		v.fail("port", "required: the port every track Service listens on (1-65535)")
	case s.Port < 1 || s.Port > 65535:
		v.fail("port", "port %d is out of range 1-65535", s.Port)
	}
	if len(s.Header) > maxHeaderLen || !headerRE.MatchString(s.Header) {
		v.fail("header", "%q is not a header name: use letters, digits, '-', '_' and '.' (at most %d characters)", s.Header, maxHeaderLen)
	}
	if s.Router.Replicas < 0 {
		v.fail("router.replicas", "replicas %d must be 0 or more", s.Router.Replicas)
	}
	v.tracks()
	v.backends()
	v.groups()
	v.affinity()
}

// maxCookieAge is ten years, more than any browser keeps a cookie.
const maxCookieAge = 10 * 365 * 24 * 3600

func (v *validator) affinity() {
	a := v.spec.Affinity
	if a == nil {
		return
	}
	switch {
	case a.Cookie == "" && a.Header == "":
		v.fail("affinity", "set exactly one of cookie (a cookie name) and header (a request header with a user id)")
	case a.Cookie != "" && a.Header != "":
		v.fail("affinity", "cookie and header exclude each other: set one")
	case a.Header != "":
		if len(a.Header) > maxHeaderLen || !headerRE.MatchString(a.Header) {
			v.fail("affinity.header", "%q is not a header name: use letters, digits, '-', '_' and '.' (at most %d characters)", a.Header, maxHeaderLen)
		}
		switch strings.ToLower(a.Header) {
		case strings.ToLower(v.spec.Header), "host", "cookie":
			// One value for a whole group (or host): every user of it
			// would land on one track.
			v.fail("affinity.header", "%q is the same for many users (a group, a host or all cookies): hash a header that carries one user's id, e.g. X-User-Id", a.Header)
		}
		if a.MaxAge != 0 || a.Secure {
			v.fail("affinity", "maxAge and secure are cookie attributes: they go with cookie, not header")
		}
	default:
		if len(a.Cookie) > maxNameLen || !headerRE.MatchString(a.Cookie) {
			v.fail("affinity.cookie", "%q is not a cookie name: use letters, digits, '-', '_' and '.' (at most %d characters)", a.Cookie, maxNameLen)
		}
		if a.MaxAge < 0 || a.MaxAge > maxCookieAge {
			v.fail("affinity.maxAge", "maxAge %d: want seconds from 1 to %d (leave it out for a session cookie)", a.MaxAge, maxCookieAge)
		}
	}
}

func (v *validator) tracks() {
	s := v.spec
	if len(s.Tracks) == 0 {
		v.fail("tracks", "at least one track is required, e.g. production: {version: v1.0.0}")
	}
	for _, name := range s.TrackNames() {
		t := s.Tracks[name]
		path := "tracks." + name
		if !isDNS1035(name) {
			v.fail(path, "track name %q is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter)", name)
			continue
		}
		if isDNS1035(s.Service) && !isDNS1035(s.ServiceName(name)) {
			v.fail(path, "Service name %q would be longer than %d characters: shorten the service or track name", s.ServiceName(name), maxNameLen)
			continue
		}
		switch {
		case t.Version == "":
			v.fail(path+".version", "required: the image tag this track runs, e.g. v1.2.3")
		case !IsVersion(t.Version):
			v.fail(path+".version", "%q is not a valid version: lowercase letters, digits, '.' and '-', starting and ending with a letter or digit, at most %d characters", t.Version, maxNameLen)
		case isDNS1035(s.Service) && !isSubdomain(s.DeploymentName(name), maxSubdomain-podNameSuffix):
			v.fail(path+".version", "Deployment name %q is not a valid DNS-1123 subdomain of at most %d characters", s.DeploymentName(name), maxSubdomain-podNameSuffix)
		}
		if t.Replicas < 0 {
			v.fail(path+".replicas", "replicas %d must be 0 or more", t.Replicas)
		}
		if t.Address != "" {
			if err := checkAddress(t.Address); err != nil {
				v.fail(path+".address", "%q: %v", t.Address, err)
			}
		}
		if t.Analysis != nil {
			v.analysis(path+".analysis", t.Analysis)
		}
	}
}

// analysis checks a stage's analysis: a bake at least one interval long,
// no negative limit, a known lowTraffic.
func (v *validator) analysis(path string, a *Analysis) {
	_, bakeSet := v.lines[path+".bake"]
	switch {
	case a.Bake <= 0:
		v.fail(path+".bake", "bake %s: more than 0", a.Bake)
	case a.Bake > 7*24*time.Hour:
		v.fail(path+".bake", "bake %s: at most 168h (a week)", a.Bake)
	}
	switch {
	case a.Interval < time.Second:
		v.fail(path+".interval", "interval %s: at least 1s (the counters are read that often at most)", a.Interval)
	case a.Bake > 0 && a.Bake < a.Interval && bakeSet:
		v.fail(path+".bake", "bake %s is shorter than its interval %s: the stage would never be judged", a.Bake, a.Interval)
	case a.Bake > 0 && a.Bake < a.Interval:
		v.fail(path+".interval", "interval %s is longer than the bake (%s by default): the stage would never be judged; set bake too", a.Interval, a.Bake)
	}
	if a.MinRequests < 0 {
		v.fail(path+".minRequests", "minRequests %d must be 0 or more", a.MinRequests)
	}
	if a.MaxErrorIncrease < 0 || a.MaxErrorIncrease > 100 {
		v.fail(path+".maxErrorIncrease", "maxErrorIncrease %g: percentage points from 0 to 100", a.MaxErrorIncrease)
	}
	for _, l := range []struct {
		name  string
		value float64
	}{{"maxP95Increase", a.MaxP95Increase}, {"maxP99Increase", a.MaxP99Increase}} {
		if l.value < 0 {
			v.fail(path+"."+l.name, "%s %g: a percent of the baseline's, 0 or more", l.name, l.value)
		}
	}
	switch a.LowTraffic {
	case "wait", "promote", "rollback":
	default:
		v.fail(path+".lowTraffic", "lowTraffic %q: want wait (bake on, the default), promote or rollback", a.LowTraffic)
	}
}

func (v *validator) backends() {
	s := v.spec
	if len(s.Backends) == 0 {
		v.fail("backends", "at least one backend is required, e.g. production: {production: 100}")
	}
	for _, name := range s.BackendNames() {
		b := s.Backends[name]
		path := "backends." + name
		if !isDNS1035(name) {
			v.fail(path, "backend name %q is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter)", name)
			continue
		}
		live, bad := 0, false
		for _, track := range b.Tracks() {
			w := b[track]
			wpath := path + "." + track
			if _, ok := s.Tracks[track]; !ok {
				v.fail(wpath, "track %q is not defined under tracks", track)
				bad = true
				continue
			}
			if w < 0 || w > MaxWeight {
				v.fail(wpath, "weight %d is out of range 0-%d", w, MaxWeight)
				bad = true
				continue
			}
			if w > 0 {
				live++
			}
		}
		if live == 0 && !bad { // a wrong weight is said once, above
			v.fail(path, "needs at least one track with a weight above 0")
		}
	}
}

func (v *validator) groups() {
	s := v.spec
	seen := make(map[string]string)
	for _, value := range s.GroupValues() {
		path := "groups." + value
		switch {
		case len(value) > maxNameLen || !groupRE.MatchString(value):
			v.fail(path, "group %q: use letters, digits, '.', '_' and '-' (at most %d characters)", value, maxNameLen)
			continue
		case seen[strings.ToLower(value)] != "":
			v.fail(path, "group %q is the same as %q ignoring case; groups match case-insensitively", value, seen[strings.ToLower(value)])
			continue
		}
		seen[strings.ToLower(value)] = value
		v.backendRef(path, s.Groups[value])
	}
	if s.Default == "" {
		v.fail("default", "required: the backend for requests of no listed group (header missing included)")
	} else {
		v.backendRef("default", s.Default)
	}
}

func (v *validator) backendRef(path, backend string) {
	if _, ok := v.spec.Backends[backend]; !ok {
		v.fail(path, "backend %q is not defined under backends (defined: %s)", backend, strings.Join(v.spec.BackendNames(), ", "))
	}
}

// The names Kubernetes checks are checked by its own rules
// (k8s.io/apimachinery/pkg/util/validation), so that a spec valid here is
// never refused by the API server.

func isDNS1035(s string) bool { return len(validation.IsDNS1035Label(s)) == 0 }

// IsServiceName reports whether s is a valid service name (a DNS-1035 label).
func IsServiceName(s string) bool { return isDNS1035(s) }

// IsVersion reports whether s is a valid track version.
func IsVersion(s string) bool { return len(s) <= maxNameLen && versionRE.MatchString(s) }

// IsNamespace reports whether s is a valid namespace name (a DNS-1123 label).
func IsNamespace(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }

// IsDomain reports whether s is a valid DNS domain of lowercase labels.
func IsDomain(s string) bool { return isSubdomain(s, maxSubdomain) }

// isSubdomain is a DNS-1123 subdomain of at most max characters (253, or
// less where Kubernetes appends to the name).
func isSubdomain(s string, max int) bool {
	return len(s) <= max && len(validation.IsDNS1123Subdomain(s)) == 0
}

// checkAddress accepts host:port where host is a DNS name, an IPv4 address or
// a bracketed IPv6 address.
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. 127.0.0.1:8081 or my-svc.my-ns.svc:8080")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not a number in 1-65535", port)
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if !isSubdomain(strings.ToLower(host), maxSubdomain) || host != strings.ToLower(host) {
		return fmt.Errorf("host %q is not an IP address or a lowercase DNS name", host)
	}
	return nil
}
