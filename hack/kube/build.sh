#!/usr/bin/env bash
# build.sh builds the binaries of the test control plane (kube-apiserver,
# kube-controller-manager, kube-scheduler, etcd, kwok, kwokctl) and helm from Go modules
# into a cache outside the repository, keyed by version. A second run builds
# nothing. Usage: hack/kube/build.sh  (prints the bin directory on the last line)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${TRACKROUTER_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trackrouter/kube}
bin="$cache/bin-k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
mkdir -p "$bin"
export GOFLAGS=-mod=mod CGO_ENABLED=0

# module DIR REQUIRE... writes a throwaway module that requires the given
# module@version pairs.
module() {
  local dir=$1; shift
  rm -rf "$dir"; mkdir -p "$dir"
  (cd "$dir" && go mod init trackrouter-kube-tools >/dev/null 2>&1 && for r in "$@"; do go mod edit -require="$r"; done)
}

build() { # build DIR PACKAGE NAME [LDFLAGS]
  local start=$SECONDS
  (cd "$1" && go build -trimpath -ldflags="-s ${4:-}" -o "$bin/$3.tmp" "$2")
  mv "$bin/$3.tmp" "$bin/$3"
  echo "built $3 in $((SECONDS - start)) s" >&2
}

# kubeversion is the ldflags that stamp the Kubernetes version: without them a
# binary built from modules reports v0.0.0-master and a node no version.
kubeversion() {
  local v=${KUBERNETES_VERSION#v} p=k8s.io/component-base/version
  echo "-X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=${v%%.*} -X $p.gitMinor=$(echo "$v" | cut -d. -f2) -X $p.gitTreeState=clean"
}
# kubemodule writes the module that builds k8s.io/kubernetes's commands.
kubemodule() {
  local dir=$1 staging=${KUBERNETES_VERSION/v1./v0.} modfile m
  module "$dir" "k8s.io/kubernetes@$KUBERNETES_VERSION"
  # k8s.io/kubernetes points its staging modules at ./staging; point them at the published copies.
  modfile=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile"); do
    (cd "$dir" && go mod edit -replace="$m=$m@$staging")
  done
}

if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ] || [ ! -x "$bin/kube-scheduler" ] || [ ! -x "$bin/kubectl" ]; then
  dir="$cache/src/kubernetes-$KUBERNETES_VERSION"
  kubemodule "$dir"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$bin/$c" ] || build "$dir" "k8s.io/kubernetes/cmd/$c" "$c" "$(kubeversion)"
  done
fi
if [ ! -x "$bin/etcd" ]; then
  dir="$cache/src/etcd-$ETCD_VERSION"
  module "$dir" "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  build "$dir" go.etcd.io/etcd/server/v3 etcd
fi
if [ ! -x "$bin/kwok" ] || [ ! -x "$bin/kwokctl" ]; then
  dir="$cache/src/kwok-$KWOK_VERSION"
  module "$dir" "sigs.k8s.io/kwok@$KWOK_VERSION"
  [ -x "$bin/kwok" ] || build "$dir" sigs.k8s.io/kwok/cmd/kwok kwok
  [ -x "$bin/kwokctl" ] || build "$dir" sigs.k8s.io/kwok/cmd/kwokctl kwokctl
fi
# helm, for the chart's tests (examples/helm): its own cache directory, so
# that a new helm version rebuilds only helm.
hbin="$cache/helm-$HELM_VERSION"
if [ ! -x "$hbin/helm" ]; then
  mkdir -p "$hbin"
  dir="$cache/src/helm-$HELM_VERSION"
  module "$dir" "helm.sh/helm/v4@$HELM_VERSION"
  bin=$hbin build "$dir" helm.sh/helm/v4/cmd/helm helm
fi
if [ ! -f "$bin/kwok-stages.yaml" ]; then
  # kwok's stage configs ship in its module: nodes become Ready and keep a
  # lease, pods become Running with an IP, deleted pods go away.
  kwokdir=$(cd "$cache/src/kwok-$KWOK_VERSION" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$kwokdir/kustomize/stage/$f"
  done > "$bin/kwok-stages.yaml.tmp"
  mv "$bin/kwok-stages.yaml.tmp" "$bin/kwok-stages.yaml"
fi
# The real node's binaries (make node-up, make e2e): kubelet and kube-proxy
# from the same module as the control plane, the CNI plugins, and a CoreDNS
# with only the plugins a cluster's DNS needs (its own main, so the cloud
# providers' SDKs are not built: the way CoreDNS documents for a smaller build).
nbin="$cache/node-k8s-$KUBERNETES_VERSION-cni-$CNI_PLUGINS_VERSION-coredns-$COREDNS_VERSION"
mkdir -p "$nbin"
if [ ! -x "$nbin/kubelet" ] || [ ! -x "$nbin/kube-proxy" ]; then
  dir="$cache/src/kubernetes-$KUBERNETES_VERSION"
  [ -f "$dir/go.mod" ] || kubemodule "$dir"
  for c in kubelet kube-proxy; do
    [ -x "$nbin/$c" ] || bin=$nbin build "$dir" "k8s.io/kubernetes/cmd/$c" "$c" "$(kubeversion)"
  done
fi
if [ ! -x "$nbin/cni/bridge" ] || [ ! -x "$nbin/cni/host-local" ] || [ ! -x "$nbin/cni/loopback" ] || [ ! -x "$nbin/cni/portmap" ]; then
  dir="$cache/src/cni-$CNI_PLUGINS_VERSION"
  module "$dir" "github.com/containernetworking/plugins@$CNI_PLUGINS_VERSION"
  mkdir -p "$nbin/cni"
  for p in bridge host-local loopback portmap; do
    t=main; [ "$p" = host-local ] && t=ipam; [ "$p" = portmap ] && t=meta
    bin=$nbin/cni build "$dir" "github.com/containernetworking/plugins/plugins/$t/$p" "$p"
  done
fi
if [ ! -x "$nbin/coredns" ]; then
  dir="$cache/src/coredns-$COREDNS_VERSION"
  module "$dir" "github.com/coredns/coredns@$COREDNS_VERSION"
  cat > "$dir/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/whoami"
	"github.com/coredns/coredns/coremain"
)

var _ = dnsserver.Directives

func main() { coremain.Run() }
GO
  (cd "$dir" && go mod tidy >/dev/null 2>&1 || true)
  bin=$nbin build "$dir" . coredns
fi
echo "$bin"
