package weights

import (
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"
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
	for _, f := range d.fields(n, "", "service", "port", "header", "template", "router", "tracks", "groups", "default", "backends", "affinity") {
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
			for _, rf := range d.fields(f.value, key, "replicas") {
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
		case "backends":
			d.mark(key, f.key)
			for _, bf := range d.fields(f.value, key) {
				s.Backends[bf.key.Value] = d.backend(bf)
			}
		}
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
	for _, tf := range d.fields(f.value, path, "version", "replicas", "address", "analysis") {
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
			t.Analysis = d.analysis(tf, p)
		}
	}
	return t
}

// analysis decodes a stage's analysis, defaults filled in.
func (d *decoder) analysis(f field, path string) *Analysis {
	d.mark(path, f.key)
	a := DefaultAnalysis
	for _, af := range d.fields(f.value, path, "bake", "interval", "minRequests", "maxErrorIncrease", "maxP95Increase", "maxP99Increase", "lowTraffic") {
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
	for _, af := range d.fields(f.value, "affinity", "cookie", "maxAge", "secure", "header") {
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
