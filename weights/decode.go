package weights

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	batchv1 "k8s.io/api/batch/v1"
)

// spec decodes a spec mapping, fills in defaults and validates it. Errors
// are collected in d.errs; the returned Spec is only meaningful without them.
func (d *decoder) spec(n *yaml.Node, src Source) *Spec {
	d.lines = make(map[string]int)
	s := &Spec{
		Header:   DefaultHeader,
		Router:   Router{Replicas: DefaultRouterReplicas},
		Tracks:   make(map[string]Track),
		Groups:   make(map[string]string),
		Backends: make(map[string]Backend),
		Source:   src,
	}
	d.mark("", n)
	trusted := false
	for _, f := range d.fields(n, "", topFields...) {
		switch key := f.key.Value; key {
		case "service":
			s.Service = d.str(f.value, key)
		case "port":
			s.Port = d.int(f.value, key, "1-65535")
		case "header":
			s.Header = d.str(f.value, key)
		case "template":
			s.Template = d.str(f.value, key)
		case "router":
			for _, rf := range d.fields(f.value, key, routerFields...) {
				s.Router.Replicas = d.int(rf.value, "router.replicas", "0 or more")
			}
		case "tracks":
			d.mark(key, f.key)
			for _, tf := range d.fields(f.value, key) {
				s.Tracks[tf.key.Value] = d.track(tf)
				s.Stages = append(s.Stages, tf.key.Value)
			}
		case "groups":
			d.mark(key, f.key)
			for _, gf := range d.fields(f.value, key) {
				d.mark("groups."+gf.key.Value, gf.key)
				s.Groups[gf.key.Value] = d.str(gf.value, "groups."+gf.key.Value)
			}
		case "default":
			s.Default = d.str(f.value, key)
		case "affinity":
			s.Affinity = d.affinity(f)
		case "trustedSources":
			trusted = true
			s.TrustedSources, s.TrustAny = d.trusted(f)
		case "backends":
			d.mark(key, f.key)
			for _, bf := range d.fields(f.value, key) {
				s.Backends[bf.key.Value] = d.backend(bf)
			}
		}
	}
	if !trusted {
		s.TrustAny = true // as before trustedSources existed
	}
	if len(d.errs) == 0 {
		v := validator{spec: s, file: d.file, lines: d.lines}
		v.validate()
		d.errs = append(d.errs, v.errs...)
		if len(v.errs) == 0 {
			v.lint()
			s.Warnings = v.warnings
		}
	}
	slices.SortStableFunc(d.errs, func(a, b *FieldError) int { return a.Line - b.Line })
	return s
}

func (d *decoder) track(f field) Track {
	path := "tracks." + f.key.Value
	d.mark(path, f.key)
	t := Track{Replicas: DefaultTrackReplicas}
	for _, tf := range d.fields(f.value, path, trackFields...) {
		p := path + "." + tf.key.Value
		switch tf.key.Value {
		case "version":
			t.Version = d.str(tf.value, p)
		case "replicas":
			if tf.value.Kind == yaml.ScalarNode && tf.value.Tag == "!!str" && tf.value.Value == AutoReplicas {
				d.mark(p, tf.value)
				t.Replicas, t.Autoscaled = 0, true
				continue
			}
			t.Replicas = d.int(tf.value, p, "0 or more, or auto")
		case "address":
			t.Address = d.str(tf.value, p)
		case "analysis":
			if tf.value.Kind == yaml.ScalarNode && tf.value.Tag == "!!null" {
				d.mark(p, tf.key) // analysis: ~ is no analysis, as gates: ~ is no gate
				continue
			}
			t.Analysis = d.analysis(tf, p)
		case "gates":
			t.Gates = d.gates(tf, p)
		}
	}
	return t
}

// trusted decodes trustedSources: "any", or a list of addresses and CIDR
// ranges (IPv4 or IPv6), each read by net/netip and written back in its
// canonical form (so nothing the user wrote reaches haproxy.cfg as is).
func (d *decoder) trusted(f field) ([]netip.Prefix, bool) {
	const path = "trustedSources"
	d.mark(path, f.key)
	if f.value.Kind == yaml.ScalarNode && f.value.Tag != "!!null" {
		if f.value.Value == "any" {
			return nil, true
		}
		d.fail(f.value, path, "want any, or a list of addresses and CIDR ranges (e.g. [10.0.0.0/8, 192.168.1.5]), found %s", describe(f.value))
		return nil, false
	}
	if f.value.Kind != yaml.SequenceNode {
		d.fail(f.value, path, "want any, or a list of addresses and CIDR ranges (e.g. [10.0.0.0/8, 192.168.1.5]), found %s", describe(f.value))
		return nil, false
	}
	if len(f.value.Content) == 0 {
		d.fail(f.value, path, "an empty list trusts no caller: every request would lose its group; list your gateway's addresses, or write any")
		return nil, false
	}
	if len(f.value.Content) > MaxTrustedSources {
		d.fail(f.value, path, "%d entries, at most %d: use wider ranges", len(f.value.Content), MaxTrustedSources)
		return nil, false
	}
	var out []netip.Prefix
	for i, n := range f.value.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.mark(p, n)
		v := d.str(n, p)
		if v == "" {
			continue
		}
		if strings.Contains(v, "/") {
			pfx, err := netip.ParsePrefix(v)
			if err != nil {
				d.fail(n, p, "%q is not a CIDR range (e.g. 10.0.0.0/8, fd00::/8): %v", v, err)
				continue
			}
			if pfx.Masked() != pfx {
				d.fail(n, p, "%q has host bits set: the range is %s", v, pfx.Masked())
				continue
			}
			if pfx.Addr().Is4In6() && pfx.Bits() >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
				pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
			}
			out = append(out, pfx)
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			d.fail(n, p, "%q is not an IP address or a CIDR range (e.g. 192.168.1.5, 10.0.0.0/8)", v)
			continue
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, false
}

// gates decodes a stage's gates: "approval", or "job:" and a batch/v1 Job.
func (d *decoder) gates(f field, path string) []Gate {
	d.mark(path, f.key)
	if f.value.Kind == yaml.ScalarNode && f.value.Tag == "!!null" {
		return nil
	}
	if f.value.Kind != yaml.SequenceNode {
		d.fail(f.value, path, "want a list of gates (approval, or job: a batch/v1 Job), found %s", describe(f.value))
		return nil
	}
	var gates []Gate
	for i, n := range f.value.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.mark(p, n)
		if n.Kind == yaml.ScalarNode && n.Value == "approval" {
			for _, g := range gates {
				if g.Approval {
					d.fail(n, p, "a second approval: one trackctl approve passes a stage's approval, so a stage has at most one")
				}
			}
			gates = append(gates, Gate{Approval: true})
			continue
		}
		if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
			d.fail(n, p, "want approval or job: (a batch/v1 Job), found %s", describe(n))
			continue
		}
		jf := d.fields(n, p, "job")
		if len(jf) != 1 {
			continue // an unknown key, said by fields
		}
		if job := d.job(jf[0].value, p+".job"); job != nil {
			gates = append(gates, Gate{Job: job})
		}
	}
	return gates
}

// job decodes a Job manifest strictly: apiVersion batch/v1, kind Job, no
// field the Job type does not have, and at least one container.
func (d *decoder) job(n *yaml.Node, path string) *batchv1.Job {
	d.mark(path, n)
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a batch/v1 Job manifest, found %s", describe(n))
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		d.fail(n, path, "%v", err)
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		d.fail(n, path, "%v", err)
		return nil
	}
	var job batchv1.Job
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&job); err != nil {
		d.fail(n, path, "not a Job: %v", err)
		return nil
	}
	pod := job.Spec.Template.Spec
	switch {
	case job.APIVersion != "batch/v1" || job.Kind != "Job":
		d.fail(n, path, "apiVersion %q, kind %q: a job gate is a batch/v1 Job", job.APIVersion, job.Kind)
	case len(pod.Containers) == 0:
		d.fail(n, path, "the Job has no containers (spec.template.spec.containers)")
	case pod.RestartPolicy != "Never" && pod.RestartPolicy != "OnFailure":
		d.fail(n, path, "spec.template.spec.restartPolicy %q: a Job's pods need Never or OnFailure", pod.RestartPolicy)
	case job.Namespace != "":
		d.fail(n, path, "metadata.namespace %q: a gate's Job runs in the spec's namespace; remove it", job.Namespace)
	default:
		if !d.jobShape(n, path, jobAllowed) {
			return nil
		}
		return &job
	}
	return nil
}

// jobAllowed is what a gate's Job may say. track-controller creates the
// Job with its own rights, in the spec's namespace, under a ServiceAccount
// of its own with no rights and no token: a gate is a test suite's pod, so
// it may choose its image, command, arguments, plain environment values,
// resources, a deadline and retries, and run as a non-root user, nothing
// that reaches a Secret, a volume, the node or another identity. A map is
// the keys allowed under it; anyKey takes any keys (labels, resources);
// a one-element list is the shape of every item; nil a scalar.
var jobAllowed = shape{
	"apiVersion": nil, "kind": nil,
	"metadata": shape{"name": nil, "labels": anyKey, "annotations": anyKey},
	"spec": shape{
		"backoffLimit": nil, "activeDeadlineSeconds": nil, "ttlSecondsAfterFinished": nil, "completions": nil, "parallelism": nil,
		"template": shape{
			"metadata": shape{"labels": anyKey, "annotations": anyKey},
			"spec": shape{
				"restartPolicy": nil, "activeDeadlineSeconds": nil, "terminationGracePeriodSeconds": nil,
				"securityContext": shape{"runAsNonRoot": nil, "runAsUser": nil, "runAsGroup": nil, "fsGroup": nil},
				"containers": []any{shape{
					"name": nil, "image": nil, "imagePullPolicy": nil, "command": []any{nil}, "args": []any{nil}, "workingDir": nil,
					"env":       []any{shape{"name": nil, "value": nil}},
					"resources": shape{"requests": anyKey, "limits": anyKey},
					"securityContext": shape{"runAsNonRoot": nil, "runAsUser": nil, "runAsGroup": nil, "readOnlyRootFilesystem": nil,
						"allowPrivilegeEscalation": nil, "capabilities": shape{"drop": []any{nil}}},
				}},
			},
		},
	},
}

type shape map[string]any

// anyKey under a key allows any keys with scalar values under it.
var anyKey = shape{"*": nil}

// jobShape checks n against allowed, failing at the first key that is not
// allowed with its line; and refuses root (runAsUser: 0) and privilege
// escalation (allowPrivilegeEscalation: true).
func (d *decoder) jobShape(n *yaml.Node, path string, allowed any) bool {
	switch a := allowed.(type) {
	case shape:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return true
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, found %s", describe(n))
			return false
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := path + "." + k.Value
			sub, ok := a[k.Value]
			if !ok {
				if sub, ok = a["*"]; !ok {
					d.fail(k, p, "not allowed in a gate's Job (track-controller creates it, under a ServiceAccount with no rights and no token): a gate's Job may set its containers' image, command, args, env values, resources and securityContext (non-root), and a deadline; "+
						"a suite that needs a Secret, a volume, another ServiceAccount or the node runs from your CI instead")
					return false
				}
			}
			if strings.HasSuffix(path, ".annotations") && (strings.Contains(k.Value, "kubernetes.io/") || strings.Contains(k.Value, "k8s.io/")) {
				d.fail(k, p, "an annotation of Kubernetes' own in a gate's Job (it can loosen the pod's confinement, as AppArmor's does): give annotations of your own domain")
				return false
			}
			if (k.Value == "runAsUser" && isZero(v)) || (k.Value == "runAsNonRoot" && v.Value != "true") || (k.Value == "allowPrivilegeEscalation" && v.Value != "false") {
				d.fail(v, p, "%s in a gate's Job: it runs as a non-root user that cannot escalate", v.Value)
				return false
			}
			if !d.jobShape(v, p, sub) {
				return false
			}
		}
	case []any:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return true
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, found %s", describe(n))
			return false
		}
		for i, item := range n.Content {
			if !d.jobShape(item, fmt.Sprintf("%s[%d]", path, i), a[0]) {
				return false
			}
		}
	case nil:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a value, found %s", describe(n))
			return false
		}
	}
	return true
}

// analysis decodes a stage's analysis, defaults filled in.
func (d *decoder) analysis(f field, path string) *Analysis {
	d.mark(path, f.key)
	a := DefaultAnalysis
	for _, af := range d.fields(f.value, path, analysisFields...) {
		p := path + "." + af.key.Value
		switch af.key.Value {
		case "bake":
			a.Bake = d.duration(af.value, p)
		case "interval":
			a.Interval = d.duration(af.value, p)
		case "minRequests":
			a.MinRequests = d.int(af.value, p, "0 or more")
		case "maxErrorIncrease":
			a.MaxErrorIncrease = d.number(af.value, p, "percentage points, 0-100")
		case "maxP95Increase":
			a.MaxP95Increase = d.number(af.value, p, "percent, 0 or more")
		case "maxP99Increase":
			a.MaxP99Increase = d.number(af.value, p, "percent, 0 or more")
		case "lowTraffic":
			a.LowTraffic = d.str(af.value, p)
		}
	}
	return &a
}

func (d *decoder) affinity(f field) *Affinity {
	d.mark("affinity", f.key)
	a := &Affinity{}
	for _, af := range d.fields(f.value, "affinity", affinityFields...) {
		p := "affinity." + af.key.Value
		switch af.key.Value {
		case "cookie":
			a.Cookie = d.str(af.value, p)
		case "maxAge":
			a.MaxAge = d.int(af.value, p, fmt.Sprintf("seconds 1-%d", maxCookieAge))
		case "secure":
			d.mark(p, af.value)
			if af.value.Kind != yaml.ScalarNode || af.value.Tag != "!!bool" {
				d.fail(af.value, p, "want true or false, found %s", describe(af.value))
				continue
			}
			a.Secure = af.value.Value == "true"
		case "header":
			a.Header = d.str(af.value, p)
		}
	}
	return a
}

func (d *decoder) backend(f field) Backend {
	path := "backends." + f.key.Value
	d.mark(path, f.key)
	b := make(Backend)
	for _, wf := range d.fields(f.value, path) {
		b[wf.key.Value] = d.int(wf.value, path+"."+wf.key.Value, fmt.Sprintf("0-%d", MaxWeight))
	}
	return b
}

// isZero reports whether a YAML scalar is the number 0 however written
// (0, 00, +0, 0x0, 0o0).
func isZero(n *yaml.Node) bool {
	var v int64
	return n.Decode(&v) == nil && v == 0
}
