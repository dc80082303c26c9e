package testcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// binaries are the files hack/kube/build.sh puts in the bin directory.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "kwok-stages.yaml"}

// ErrNoBinaries says the control plane binaries are not built.
var ErrNoBinaries = errors.New("test cluster binaries are missing: run `make kube-bins` (builds them once, ~10 min cold)")

// repoRoot finds the repository from the working directory of a test.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "kube", "versions.env")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("hack/kube/versions.env not found above the working directory")
		}
		dir = parent
	}
}

// BinDir returns where hack/kube/build.sh puts the binaries for the versions
// in hack/kube/versions.env. TRACKROUTER_KUBE_BIN overrides it.
func BinDir() (string, error) {
	if d := os.Getenv("TRACKROUTER_KUBE_BIN"); d != "" {
		return d, nil
	}
	_, v, cache, err := layout()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, fmt.Sprintf("bin-k8s-%s-etcd-%s-kwok-%s",
		v["KUBERNETES_VERSION"], v["ETCD_VERSION"], v["KWOK_VERSION"])), nil
}

// layout is the repository's root, hack/kube/versions.env's versions, and
// the cache where hack/kube/build.sh keeps what it builds.
func layout() (root string, versions map[string]string, cache string, err error) {
	if root, err = repoRoot(); err != nil {
		return "", nil, "", err
	}
	if versions, err = readVersions(filepath.Join(root, "hack", "kube", "versions.env")); err != nil {
		return "", nil, "", err
	}
	if cache = os.Getenv("TRACKROUTER_KUBE_CACHE"); cache != "" {
		return root, versions, cache, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", nil, "", err
		}
		base = filepath.Join(home, ".cache")
	}
	return root, versions, filepath.Join(base, "trackrouter", "kube"), nil
}

// runBuild runs hack/kube/build.sh, its output on stderr.
func runBuild(ctx context.Context, root string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "kube", "build.sh"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hack/kube/build.sh: %w", err)
	}
	return nil
}

// Helm is the helm binary of hack/kube/versions.env's HELM_VERSION, built
// by hack/kube/build.sh (make kube-bins); under CI a missing one is built.
func Helm() (string, error) {
	root, v, cache, err := layout()
	if err != nil {
		return "", err
	}
	path := filepath.Join(cache, "helm-"+v["HELM_VERSION"], "helm")
	if _, err := os.Stat(path); err != nil && os.Getenv("CI") != "" {
		if err := runBuild(context.Background(), root); err != nil {
			return "", err
		}
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%w (run make kube-bins)", err)
	}
	return path, nil
}

func readVersions(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, val, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			v[k] = val
		}
	}
	for _, k := range []string{"KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION"} {
		if v[k] == "" {
			return nil, fmt.Errorf("%s: %s is not set", path, k)
		}
	}
	return v, sc.Err()
}

// EnsureBinaries returns the bin directory. When a binary is missing it
// builds them if build is true (CI), and returns ErrNoBinaries otherwise.
func EnsureBinaries(ctx context.Context, build bool) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	if missing(dir) == "" {
		return dir, nil
	}
	if !build {
		return "", fmt.Errorf("%w; missing %s", ErrNoBinaries, filepath.Join(dir, missing(dir)))
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	if err := runBuild(ctx, root); err != nil {
		return "", err
	}
	if m := missing(dir); m != "" {
		return "", fmt.Errorf("hack/kube/build.sh did not produce %s", filepath.Join(dir, m))
	}
	return dir, nil
}

func missing(dir string) string {
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return b
		}
	}
	return ""
}

// Kubectl is the kubectl of the test control plane's version, built with it
// by hack/kube/build.sh.
func Kubectl() (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubectl")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%w (run make kube-bins)", err)
	}
	return path, nil
}

// nodeBinaries are the files hack/kube/build.sh puts in the real node's
// bin directory.
var nodeBinaries = []string{"kubelet", "kube-proxy", "coredns", "cni/bridge", "cni/host-local", "cni/loopback", "cni/portmap"}

// NodeBinaries returns the real node's bin directory (kubelet, kube-proxy,
// coredns, cni/), built by hack/kube/build.sh; with build true (CI) missing
// ones are built, otherwise they are an error naming the file and make
// kube-bins.
func NodeBinaries(ctx context.Context, build bool) (string, error) {
	root, v, cache, err := layout()
	if err != nil {
		return "", err
	}
	for _, k := range []string{"CNI_PLUGINS_VERSION", "COREDNS_VERSION"} {
		if v[k] == "" {
			return "", fmt.Errorf("hack/kube/versions.env: %s is not set", k)
		}
	}
	dir := filepath.Join(cache, fmt.Sprintf("node-k8s-%s-cni-%s-coredns-%s",
		v["KUBERNETES_VERSION"], v["CNI_PLUGINS_VERSION"], v["COREDNS_VERSION"]))
	miss := func() string {
		for _, b := range nodeBinaries {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return b
			}
		}
		return ""
	}
	if m := miss(); m != "" {
		if !build {
			return "", fmt.Errorf("the real node's binaries are missing (%s): run `make kube-bins`", filepath.Join(dir, m))
		}
		if err := runBuild(ctx, root); err != nil {
			return "", err
		}
		if m := miss(); m != "" {
			return "", fmt.Errorf("hack/kube/build.sh did not produce %s", filepath.Join(dir, m))
		}
	}
	return dir, nil
}
