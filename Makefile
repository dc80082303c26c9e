# trackrouter. `make test` runs every test; `make demo` runs the sidecar
# locally (once it exists; until then `make render`).
GO ?= go
BIN := $(CURDIR)/bin

.PHONY: all build test test-short vet fmt-check render kube-bins golden

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

render:
	$(GO) run ./cmd/trackctl render examples/account-service.yaml

# test runs every test, with the race detector, against a real haproxy.
test: fmt-check vet
	CI=$${CI:-} $(GO) test -race -count=1 ./...

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

# kube-bins builds the test control plane into ~/.cache/trackrouter/kube.
kube-bins:
	hack/kube/build.sh
