// Package kube builds the Kubernetes client configuration the binaries share.
package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config loads the client configuration as kubectl does: the kubeconfig
// file given, else $KUBECONFIG, else ~/.kube/config, else the in-cluster
// configuration; context, when set, picks a context of that file.
func Config(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	rc, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		// Name what was looked for: $KUBECONFIG may be set to files that
		// do not exist (client-go then skips them silently).
		if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" && kubeconfig == "" {
			var missing []string
			for _, f := range filepath.SplitList(env) {
				if _, serr := os.Stat(f); serr != nil {
					missing = append(missing, f)
				}
			}
			if len(missing) > 0 {
				return nil, fmt.Errorf("no Kubernetes client config: $KUBECONFIG names %s, which does not exist; fix $KUBECONFIG or pass --kubeconfig", strings.Join(missing, ", "))
			}
			return nil, fmt.Errorf("no Kubernetes client config: the files $KUBECONFIG names (%s) hold no cluster; fix them or pass --kubeconfig", env)
		}
		return nil, fmt.Errorf("no Kubernetes client config: pass --kubeconfig, set $KUBECONFIG, create ~/.kube/config, or run in a pod")
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	return rc, nil
}

// Defaults of --kube-api-qps and --kube-api-burst: client-go's own (5 and
// 10) made 30 services take 53 s to converge; these, 12 s.
const (
	DefaultQPS   = 100
	DefaultBurst = 200
)

// SetRate sets the client-side rate limit of API requests; zero values
// keep the defaults above.
func SetRate(rc *rest.Config, qps float32, burst int) {
	if qps <= 0 {
		qps = DefaultQPS
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	rc.QPS, rc.Burst = qps, burst
}

// ConfigAndNamespace is Config with the namespace of the chosen context
// (as kubectl -n defaults to it): "default" when the context names none.
func ConfigAndNamespace(kubeconfig, context string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	rc, err := Config(kubeconfig, context)
	if err != nil {
		return nil, "", err
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	return rc, ns, nil
}
