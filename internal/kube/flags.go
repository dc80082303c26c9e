package kube

import "github.com/spf13/pflag"

// Flags are the client flags all three binaries take, with the same names,
// defaults and help: which cluster (--kubeconfig, --context) and how fast to
// talk to it (--kube-api-qps, --kube-api-burst). Each binary's namespace
// flag is its own: it means another thing in each (the Services to route
// to, the namespace to watch, where to look).
type Flags struct {
	Kubeconfig *string
	Context    *string
	QPS        *float32
	Burst      *int
}

// AddTo defines the flags in fs. when, if not empty, says when they are
// used ("with --configmap").
func (f Flags) AddTo(fs *pflag.FlagSet, when string) {
	if when != "" {
		when = " (" + when + ")"
	}
	fs.StringVar(f.Kubeconfig, "kubeconfig", "", "kubeconfig file"+when+" (default: $KUBECONFIG, ~/.kube/config, else the in-cluster config)")
	fs.StringVar(f.Context, "context", "", "kubeconfig context to use"+when+" (default: the current one)")
	fs.Float32Var(f.QPS, "kube-api-qps", DefaultQPS, "API requests per second this client may send, a client-side limit"+when)
	fs.IntVar(f.Burst, "kube-api-burst", DefaultBurst, "API requests this client may send in a burst"+when)
}
