// Package weights holds the service spec that trackrouter, track-controller
// and trackctl share: how a service's requests are split between its tracks.
// It parses a bare service.yaml or a ConfigMap manifest, fills in defaults and
// validates every field, keeping the line of each field for errors.
package weights

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
)

const (
	// DataKey is the ConfigMap key that holds the spec.
	DataKey = "service.yaml"
	// ServiceLabel labels the ConfigMaps that hold a spec; its value is the service.
	ServiceLabel = "trackrouter.dev/service"
	// DefaultHeader is the request header that names the traffic group.
	DefaultHeader = "X-Traffic-Group"
	// DefaultRouterReplicas is the size of the HAProxy tier when the spec does not say.
	DefaultRouterReplicas = 4
	// DefaultTrackReplicas is the size of a track when the spec does not say.
	DefaultTrackReplicas = 2
	// AutoReplicas is the replicas value that leaves a track's size to an
	// autoscaler (a HorizontalPodAutoscaler on its Deployment).
	AutoReplicas = "auto"
	// MaxWeight is the largest server weight HAProxy accepts.
	MaxWeight = 256
)

// Spec is one service: its tracks, the header groups and the weighted backends.
type Spec struct {
	Service  string
	Port     int
	Header   string
	Template string
	Router   Router
	Tracks   map[string]Track
	// Stages lists the tracks in the order the spec writes them: the order
	// a release goes through (trackctl deploy and promote).
	Stages []string
	// Groups maps a header value, as written, to a backend. Values are unique
	// ignoring case and match requests case-insensitively.
	Groups   map[string]string
	Default  string
	Backends map[string]Backend
	// Affinity, when set, keeps each user on one track (trackrouter's
	// sticky users); nil balances every request on its own.
	Affinity *Affinity
	// TrustedSources are the callers (addresses and ranges) whose group
	// header (and affinity header) HAProxy believes; from any other caller
	// the headers are removed before routing, so it is served as the
	// default group. Nil with TrustAny: every caller is trusted (the
	// behaviour before trustedSources, and when the spec says any).
	TrustedSources []netip.Prefix
	TrustAny       bool

	// Source says where the spec came from, for messages: the file and, for a
	// ConfigMap, its namespace and name.
	Source Source
	// Warnings are what works but is probably not meant: a track with weight
	// but no replicas, a track or backend nothing reaches, a spec ConfigMap
	// the controller ignores. They do not make the spec invalid.
	Warnings ErrorList
}

// Source is where a spec was read from.
type Source struct {
	File      string
	Line      int // line of the spec's first line in File
	Namespace string
	Name      string // ConfigMap name; empty for a bare service.yaml
	// Labelled: the ConfigMap carries the trackrouter.dev/service label
	// (without it the controller ignores the spec).
	Labelled bool
}

// ConfigMapSource is the Source of the spec in a ConfigMap, as the API
// serves it: errors name it configmap/<namespace>/<name>.
func ConfigMapSource(namespace, name string) Source {
	return Source{File: "configmap/" + namespace + "/" + name, Namespace: namespace, Name: name}
}

func (s Source) String() string {
	if s.Name == "" {
		return s.File
	}
	return fmt.Sprintf("%s (ConfigMap %s/%s)", s.File, s.Namespace, s.Name)
}

// Affinity assigns users, not requests, to tracks: exactly one of Cookie
// and Header is set.
type Affinity struct {
	// Cookie names the cookie HAProxy sets to the track that served a
	// client's first request; MaxAge (seconds, 0: a session cookie) and
	// Secure are its attributes.
	Cookie string
	MaxAge int
	Secure bool
	// Header names the request header (a user id) whose value is hashed,
	// consistently and by weight, to a track.
	Header string
}

func (a *Affinity) String() string {
	switch {
	case a == nil:
		return ""
	case a.Header != "":
		return "header " + a.Header
	}
	s := "cookie " + a.Cookie
	if a.MaxAge > 0 {
		s += fmt.Sprintf(" maxAge %d", a.MaxAge)
	}
	if a.Secure {
		s += " secure"
	}
	return s
}

// Router sizes the HAProxy tier.
type Router struct {
	Replicas int
}

// Track is one Deployment of the service.
type Track struct {
	Version  string
	Replicas int
	// Autoscaled (replicas: auto) leaves the Deployment's replicas to an
	// autoscaler: track-controller never writes them.
	Autoscaled bool
	// Address overrides where the track answers (host:port); empty means the
	// track's ClusterIP Service.
	Address string
	// Analysis, when set, is how a release on this stage is judged before
	// it moves on (see internal/analysis); nil when the spec has none.
	Analysis *Analysis
	// Gates must pass, in order, before a release leaves this stage for
	// the next one (after the bake, when the stage has an analysis).
	Gates []Gate
}

// Gate is one condition a release waits for on a stage: a person's
// approval (trackctl approve), or a Job that must succeed.
type Gate struct {
	Approval bool
	// Job is a batch/v1 Job (a test suite) run against the stage's track
	// Service: its containers get TRACK_URL, SERVICE, TRACK and VERSION.
	Job *batchv1.Job
}

// String is the gate in the spec's words, for diffs and status.
func (g Gate) String() string {
	if g.Approval {
		return "approval"
	}
	if g.Job == nil {
		return "none"
	}
	var images []string
	for _, c := range g.Job.Spec.Template.Spec.Containers {
		images = append(images, c.Image)
	}
	name := g.Job.Name
	if name == "" {
		name = "(unnamed)"
	}
	return "job " + name + " (" + strings.Join(images, ", ") + ")"
}

// GateWords is a stage's gates in the spec's words; "none" without any.
func GateWords(gates []Gate) string {
	if len(gates) == 0 {
		return "none"
	}
	parts := make([]string, len(gates))
	for i, g := range gates {
		parts[i] = g.String()
	}
	return strings.Join(parts, ", ")
}

// Analysis is a stage's canary analysis: how long it bakes, how often it
// is judged, how much traffic it needs, and the largest increases over the
// baseline allowed. Fields the spec leaves out have DefaultAnalysis's
// values.
type Analysis struct {
	Bake, Interval time.Duration
	MinRequests    int
	// MaxErrorIncrease is in percentage points; the latency ones in
	// percent of the baseline's percentile.
	MaxErrorIncrease, MaxP95Increase, MaxP99Increase float64
	// LowTraffic is wait, promote or rollback: what a stage with fewer
	// than MinRequests does at the end of its bake.
	LowTraffic string
}

// DefaultAnalysis is safe for a small canary: a 10 min bake judged every
// 30 s, 100 requests, +0.5 point of errors, +50% on p95, +100% on p99, and
// a stage with too little traffic bakes on.
var DefaultAnalysis = Analysis{Bake: 10 * time.Minute, Interval: 30 * time.Second, MinRequests: 100,
	MaxErrorIncrease: 0.5, MaxP95Increase: 50, MaxP99Increase: 100, LowTraffic: "wait"}

// String is the analysis in the spec's words, for diffs.
func (a *Analysis) String() string {
	if a == nil {
		return "none"
	}
	return fmt.Sprintf("bake %s, interval %s, minRequests %d, maxErrorIncrease %g, maxP95Increase %g, maxP99Increase %g, lowTraffic %s",
		a.Bake, a.Interval, a.MinRequests, a.MaxErrorIncrease, a.MaxP95Increase, a.MaxP99Increase, a.LowTraffic)
}

// Backend maps track names to relative weights (0..256).
type Backend map[string]int

// TrackNames returns the track names in sorted order.
func (s *Spec) TrackNames() []string { return sortedKeys(s.Tracks) }

// BackendNames returns the backend names in sorted order.
func (s *Spec) BackendNames() []string { return sortedKeys(s.Backends) }

// GroupValues returns the group values in sorted order.
func (s *Spec) GroupValues() []string { return sortedKeys(s.Groups) }

// Tracks returns the track names of a backend in sorted order.
func (b Backend) Tracks() []string { return sortedKeys(b) }

// ServiceName is the name of a track's ClusterIP Service.
func (s *Spec) ServiceName(track string) string { return s.Service + "-" + track }

// DeploymentName is the name of a track's Deployment at its version.
func (s *Spec) DeploymentName(track string) string {
	return s.Service + "-" + track + "-" + s.Tracks[track].Version
}

// TrackAddress is where a track answers: its address override, or its Service
// in namespace ns under clusterDomain.
func (s *Spec) TrackAddress(track, ns, clusterDomain string) string {
	if a := s.Tracks[track].Address; a != "" {
		return a
	}
	return fmt.Sprintf("%s.%s.svc.%s:%d", s.ServiceName(track), ns, clusterDomain, s.Port)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// MaxTrustedSources bounds trustedSources: they are one ACL line.
const MaxTrustedSources = 64

// TrustedWords is trustedSources in the spec's words, for diffs.
func (s *Spec) TrustedWords() string {
	if s.TrustAny {
		return "any"
	}
	parts := make([]string, len(s.TrustedSources))
	for i, p := range s.TrustedSources {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}
