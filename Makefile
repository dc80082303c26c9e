# trackrouter. `make test` runs every test; `make demo` runs the sidecar
# locally with demo backends.
GO ?= go
BIN := $(CURDIR)/bin

.PHONY: docs demo all build test test-short vet fmt-check render kube-bins golden cluster-up cluster-down dist image node-up node-down e2e not-running

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN)/ ./cmd/...

# dist builds the release archives (the three binaries, and trackctl as the
# kubectl plugin kubectl-track) for linux and darwin, amd64 and arm64, with
# VERSION stamped, and the krew manifest dist/track.yaml with their sha256.
# VERSION: make dist VERSION=v0.2.0, or the tag HEAD is at.
VERSION ?= $(shell git describe --tags --exact-match 2>/dev/null)
dist:
	VERSION=$(VERSION) GO=$(GO) hack/dist/dist.sh

render:
	$(GO) run ./cmd/trackctl render examples/account-service/account-service.yaml

# demo runs the sidecar locally: HAProxy, demo backends and the example spec.
demo:
	@command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || \
	  { echo "make demo: haproxy is not installed: apt-get install -y haproxy (Debian, Ubuntu) or brew install haproxy (macOS)"; exit 1; }
	$(GO) run ./cmd/trackrouter --demo

# test runs every test, with the race detector, against a real haproxy; the
# end-to-end walk on a real node (internal/e2e) last and alone, so that
# what it measures is not the other packages' load.
test: fmt-check vet kube-bins
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /internal/e2e$$)
	$(GO) test -race -count=1 -v -timeout 45m ./internal/e2e

# docs builds the documentation site (docs/, mkdocs.yml) into dist/site,
# strictly: a broken link or a page missing from the nav fails. mkdocs and
# mkdocs-material are Debian packages (.ci/run installs them).
docs:
	@command -v mkdocs >/dev/null 2>&1 && { [ -d /usr/share/mkdocs/themes/material ] || python3 -c 'import material' 2>/dev/null; } || \
	  { echo "make docs: mkdocs is not installed: apt-get install -y mkdocs mkdocs-material"; exit 1; }
	mkdocs build --strict --quiet

test-short:
	$(GO) test -short ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# golden regenerates the golden haproxy.cfg files of the render tests.
golden:
	$(GO) test ./haproxyconf -run TestGolden -update

# image builds the images from the Dockerfiles with buildah (no daemon, no
# registry: the bases are assembled locally) into dist/images as OCI
# archives: trackrouter.tar (IMAGE, by default the name examples/install
# uses), echo.tar (the examples' app), pause.tar (the real node's sandbox).
# With Docker: docker build -t ghcr.io/trackrouter/trackrouter:0.1.0 .
image:
	@start=$$(date +%s); hack/image/build.sh dist/images; echo "image: $$(( $$(date +%s) - start )) s"

# e2e walks a whole release on a real node (make node-up's parts), under
# steady traffic, counting every failed request. make test runs it too.
e2e: kube-bins
	$(GO) test -race -count=1 -v -timeout 45m ./internal/e2e

# kube-bins builds the test control plane and the real node's binaries
# (kubelet, kube-proxy, CoreDNS, the CNI plugins) into
# ~/.cache/trackrouter/kube (versions in hack/kube/versions.env); a second
# run builds nothing.
kube-bins:
	@start=$$(date +%s); hack/kube/build.sh; echo "kube-bins: $$(( $$(date +%s) - start )) s"

# cluster-up starts a local control plane (etcd, kube-apiserver,
# controller-manager, scheduler, kwok with fake nodes) in the background.
CLUSTER_DIR ?= /tmp/trackrouter-cluster
cluster-up: kube-bins
	@mkdir -p $(CLUSTER_DIR)
	$(GO) build -o $(BIN)/cluster ./hack/cluster
	@if [ -f $(CLUSTER_DIR)/launcher.pid ] && kill -0 $$(cat $(CLUSTER_DIR)/launcher.pid) 2>/dev/null; then \
	  echo "a cluster is already running in $(CLUSTER_DIR) (make node-down, or make cluster-down)"; exit 1; fi
	@nohup $(BIN)/cluster --dir $(CLUSTER_DIR) $(CLUSTER_ARGS) > $(CLUSTER_DIR)/launcher.log 2>&1 & echo $$! > $(CLUSTER_DIR)/launcher.pid
	@for i in $$(seq 1 1800); do [ -f $(CLUSTER_DIR)/ready ] && break; \
	  kill -0 $$(cat $(CLUSTER_DIR)/launcher.pid) 2>/dev/null || break; sleep 0.1; done
	@cat $(CLUSTER_DIR)/launcher.log; [ -f $(CLUSTER_DIR)/ready ]

# node-up starts the control plane with a real node instead of fake ones
# (root; Debian's containerd, runc, iptables, conntrack) and imports the
# images of make image; node-down stops it and undoes what it changed on
# the host. kubectl: the one make kube-bins built (the server's version),
# see the kubeconfig line it prints.
node-up: not-running kube-bins image
	@$(MAKE) --no-print-directory cluster-up CLUSTER_ARGS="--node --images dist/images/pause.tar,dist/images/trackrouter.tar,dist/images/echo.tar"

# not-running refuses at once when a cluster of CLUSTER_DIR runs (before
# anything is built or overwritten).
not-running:
	@if [ -f $(CLUSTER_DIR)/launcher.pid ] && kill -0 $$(cat $(CLUSTER_DIR)/launcher.pid) 2>/dev/null; then \
	  echo "a cluster is already running in $(CLUSTER_DIR) (make node-down, or make cluster-down)"; exit 1; fi

node-down: cluster-down
	@$(GO) run ./hack/cluster --dir $(CLUSTER_DIR) --clean

cluster-down:
	@if [ -f $(CLUSTER_DIR)/launcher.pid ]; then pid=$$(cat $(CLUSTER_DIR)/launcher.pid); \
	  kill $$pid 2>/dev/null; while kill -0 $$pid 2>/dev/null; do sleep 0.1; done; \
	  rm -f $(CLUSTER_DIR)/launcher.pid $(CLUSTER_DIR)/ready; echo "cluster stopped"; else echo "no cluster running"; fi
