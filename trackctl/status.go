package trackctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/kube"
	"github.com/trackrouter/trackrouter/weights"
)

// kubeFlags are kubectl's flags for a command that talks to a cluster.
type kubeFlags struct {
	kubeconfig, context, namespace string
	allNamespaces                  bool
	timeout                        time.Duration
	qps                            float32
	burst                          int
}

func (k *kubeFlags) add(fs *pflag.FlagSet) {
	kube.Flags{Kubeconfig: &k.kubeconfig, Context: &k.context, QPS: &k.qps, Burst: &k.burst}.AddTo(fs, "")
	fs.StringVarP(&k.namespace, "namespace", "n", "", "namespace (default: the context's)")
	fs.BoolVarP(&k.allNamespaces, "all-namespaces", "A", false, "every namespace")
	fs.DurationVar(&k.timeout, "request-timeout", 30*time.Second, "give up on an API request after this long")
}

// client returns a client and the namespace to look in ("" for all).
func (k *kubeFlags) client(requests *atomic.Int64) (kubernetes.Interface, string, error) {
	if k.allNamespaces && k.namespace != "" {
		return nil, "", usageError{"-A and -n exclude each other"}
	}
	rc, ns, err := kube.ConfigAndNamespace(k.kubeconfig, k.context)
	if err != nil {
		return nil, "", apiError{err}
	}
	if k.timeout > 0 {
		rc.Timeout = k.timeout
	}
	if k.namespace != "" {
		ns = k.namespace
	}
	if k.allNamespaces {
		ns = ""
	}
	kube.SetRate(rc, k.qps, k.burst)
	if requests != nil {
		kube.CountRequests(rc, func(string, string) { requests.Add(1) })
	}
	c, err := kubernetes.NewForConfig(rc)
	return c, ns, err
}

// statusOptions are status's flags.
type statusOptions struct {
	kube         kubeFlags
	output       string
	watch        bool
	interval     time.Duration
	minEndpoints int
	// requests counts API requests, when set (the benchmark).
	requests *atomic.Int64
	// client, when set, replaces the kubeconfig (tests).
	client kubernetes.Interface
}

func (e *env) statusCommand() *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [SERVICE...]",
		Short: "Show the health of services: HAProxy pods on the current spec, tracks, leftovers",
		Long: `Show, for every service spec (a ConfigMap labelled trackrouter.dev/service),
whether it is healthy, and what is wrong in words:

  - the HAProxy tier below its replicas;
  - an HAProxy pod that runs an older spec, rejected the spec, or has not
    reported (each sidecar reports what its HAProxy runs, read back from
    HAProxy: the spec's resourceVersion, the live weights, since when);
  - a track with fewer ready endpoints than --min-endpoints (or than its
    replicas, when the spec asks for fewer);
  - a leftover Deployment (an old version still running, a removed track)
    or one with more replicas than the spec says;
  - an invalid spec.

The table has one row per service, with its problems below it; -o wide, or
naming one service, adds per track the versions running, and per backend the
weights in the spec and the weights live on the HAProxy pods. -o json is
stable (see docs/health.md). The exit code is 1 when any service is unhealthy,
or when its last release was rolled back or stopped in the last hour (until
a newer build is deployed; the status word is then ROLLEDBACK or STOPPED),
so that cron and CI can run it. Installed as kubectl-track, this is also
"kubectl track status".`,
		Example: `  trackctl status -A
  trackctl status account-service -n shop
  trackctl status -n shop -o json
  trackctl status -A --watch`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "table", "wide", "json", "yaml":
			default:
				return usageError{fmt.Sprintf("-o %q: want one of table, wide, json, yaml", o.output)}
			}
			if o.minEndpoints < 0 {
				return usageError{"--min-endpoints must be 0 or more"}
			}
			if o.watch && o.interval < 500*time.Millisecond {
				return usageError{fmt.Sprintf("--interval %s: at least 500ms", o.interval)}
			}
			for _, a := range args {
				if !weights.IsServiceName(a) {
					return usageError{fmt.Sprintf("%q is not a service name", a)}
				}
			}
			return e.runStatus(cmd.Context(), o, args)
		},
	}
	fs := cmd.Flags()
	o.kube.add(fs)
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table, wide, json, yaml")
	fs.BoolVarP(&o.watch, "watch", "w", false, "redraw in place every --interval until interrupted")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "how often --watch reads the cluster")
	fs.IntVar(&o.minEndpoints, "min-endpoints", 2, "ready endpoints each track needs (a track whose spec asks for fewer replicas needs that many)")
	return cmd
}

func (e *env) runStatus(ctx context.Context, o *statusOptions, services []string) error {
	client, ns := o.client, o.kube.namespace
	if client == nil {
		var err error
		if client, ns, err = o.kube.client(o.requests); err != nil {
			return err
		}
	} else if o.kube.allNamespaces {
		ns = ""
	}
	draw := func(w io.Writer) (bool, error) {
		objs, err := Collect(ctx, client, ns, services)
		if err != nil {
			return false, apiError{err}
		}
		hs := fleet.Evaluate(objs, fleet.Options{MinEndpoints: o.minEndpoints})
		var missing []string
		for _, svc := range services {
			found := false
			for _, h := range hs {
				found = found || h.Service == svc
			}
			if !found {
				missing = append(missing, svc)
			}
		}
		if len(hs) == 0 && len(services) > 0 {
			return false, fmt.Errorf("no spec for %s in %s", strings.Join(services, ", "), namespaceWords(ns))
		}
		healthy := len(missing) == 0
		if !healthy {
			fmt.Fprintf(e.stderr, "no spec for %s in %s\n", strings.Join(missing, ", "), namespaceWords(ns))
		}
		now := time.Now()
		for _, h := range hs {
			healthy = healthy && !h.Alarm(now)
		}
		switch o.output {
		case "json", "yaml":
			if hs == nil {
				hs = []*fleet.Health{}
			}
			return healthy, printStructured(w, o.output, hs)
		}
		wide := o.output == "wide" || len(services) == 1
		if len(hs) == 0 {
			fmt.Fprintf(w, "No service specs in %s.\n", namespaceWords(ns))
			return true, nil
		}
		printTable(w, hs, ns == "", wide, isTerminal(e.stdout))
		return healthy, nil
	}
	if !o.watch {
		healthy, err := draw(e.stdout)
		if err != nil {
			return err
		}
		if !healthy {
			return errProblems
		}
		return nil
	}
	for {
		var b strings.Builder
		_, err := draw(&b)
		if isTerminal(e.stdout) && (o.output == "table" || o.output == "wide") {
			fmt.Fprint(e.stdout, "\033[H\033[2J") // home, clear: redraw in place
		}
		if err != nil {
			fmt.Fprintf(e.stdout, "%s  %v\n", time.Now().Format("15:04:05"), err)
		} else {
			fmt.Fprintf(e.stdout, "%s  every %s\n\n%s", time.Now().Format("15:04:05"), o.interval, b.String())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
	}
}

func namespaceWords(ns string) string {
	if ns == "" {
		return "any namespace"
	}
	return "namespace " + ns
}

// Collect reads what the health of services is judged from, in five API
// requests whatever the number of services: spec ConfigMaps, status
// ConfigMaps, Deployments with app and tier labels, the track Services'
// EndpointSlices and the HAProxy pods. ns "" is every namespace; services,
// when given, narrows to those.
func Collect(ctx context.Context, client kubernetes.Interface, ns string, services []string) (fleet.Objects, error) {
	var objs fleet.Objects
	specSel := fleet.SelectSpecs
	appSel := contract.LabelApp
	if len(services) > 0 {
		specSel = fmt.Sprintf("%s in (%s)", weights.ServiceLabel, strings.Join(services, ","))
		appSel = fmt.Sprintf("app in (%s)", strings.Join(services, ","))
	}
	cms, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: specSel})
	if err != nil {
		return objs, fmt.Errorf("list spec ConfigMaps: %w", err)
	}
	var trackServices []string
	names := map[string]bool{}
	for i := range cms.Items {
		cm := &cms.Items[i]
		objs.Specs = append(objs.Specs, cm)
		svc := cm.Labels[weights.ServiceLabel]
		names[svc] = true
		if spec, err := weights.ParseService(weights.Source{}, []byte(cm.Data[weights.DataKey])); err == nil {
			for _, t := range spec.TrackNames() {
				trackServices = append(trackServices, spec.ServiceName(t))
			}
		}
	}
	if len(objs.Specs) == 0 {
		return objs, nil
	}
	if len(services) == 0 {
		for n := range names {
			services = append(services, n)
		}
		sort.Strings(services)
		appSel = fmt.Sprintf("app in (%s)", strings.Join(services, ","))
	}
	// The HAProxy pods' status ConfigMaps and the release ConfigMaps.
	status, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: fleet.SelectOwned})
	if err != nil {
		return objs, fmt.Errorf("list status and release ConfigMaps: %w", err)
	}
	for i := range status.Items {
		objs.Status = append(objs.Status, &status.Items[i])
	}
	deps, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: appSel + "," + contract.LabelTier})
	if err != nil {
		return objs, fmt.Errorf("list Deployments: %w", err)
	}
	for i := range deps.Items {
		objs.Deployments = append(objs.Deployments, &deps.Items[i])
	}
	if len(trackServices) > 0 {
		sort.Strings(trackServices)
		slices, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: fmt.Sprintf("%s in (%s)", discoveryv1.LabelServiceName, strings.Join(slices.Compact(trackServices), ","))})
		if err != nil {
			return objs, fmt.Errorf("list EndpointSlices: %w", err)
		}
		for i := range slices.Items {
			objs.EndpointSlices = append(objs.EndpointSlices, &slices.Items[i])
		}
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: appSel + "," + contract.LabelTier + "=" + contract.TierRouter})
	if err != nil {
		return objs, fmt.Errorf("list HAProxy pods: %w", err)
	}
	for i := range pods.Items {
		objs.Pods = append(objs.Pods, &pods.Items[i])
	}
	return objs, nil
}

// isTerminal says whether w is a terminal (redrawing in place makes sense).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
