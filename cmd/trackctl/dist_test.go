package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// krewPlugin is the part of krew's Plugin manifest the test checks.
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Caveats          string `json:"caveats"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			Sha256 string `json:"sha256"`
			Files  []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
			Bin string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestDistAndKrewManifest builds this platform's archives with the
// Makefile's script (make dist does every platform) and checks the krew
// manifest against them: the archive its URL names exists with its
// sha256, the files it installs are in it, the bin is kubectl-track, and
// that binary is the kubectl plugin with the version stamped.
func TestDistAndKrewManifest(t *testing.T) {
	dist := t.TempDir()
	cmd := exec.Command("../../hack/dist/dist.sh")
	// The release's -trimpath and CGO_ENABLED=0 would compile every
	// package again (minutes, beside the other tests); the layout and the
	// manifest do not depend on them.
	cgo, err := exec.Command("go", "env", "CGO_ENABLED").Output()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "VERSION=v9.8.7", "DIST="+dist, "PLATFORMS="+runtime.GOOS+"/"+runtime.GOARCH,
		"DIST_FLAGS=", "CGO_ENABLED="+strings.TrimSpace(string(cgo)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dist.sh: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dist, "track.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p krewPlugin
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		t.Fatalf("track.yaml: %v\n%s", err, raw)
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" || p.Metadata.Name != "track" ||
		p.Spec.Version != "v9.8.7" || p.Spec.ShortDescription == "" || p.Spec.Homepage == "" || len(p.Spec.Platforms) != 1 {
		t.Fatalf("manifest:\n%s", raw)
	}
	pl := p.Spec.Platforms[0]
	if pl.Selector.MatchLabels["os"] != runtime.GOOS || pl.Selector.MatchLabels["arch"] != runtime.GOARCH || pl.Bin != "kubectl-track" {
		t.Errorf("platform: %+v", pl)
	}
	archive := filepath.Join(dist, path.Base(pl.URI))
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatalf("the archive the manifest names: %v", err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != pl.Sha256 {
		t.Errorf("sha256 of %s: %x, the manifest says %s", archive, sum, pl.Sha256)
	}
	// Unpack, as krew does, and install what files: names.
	unpacked := t.TempDir()
	gz, err := gzip.NewReader(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		dst := filepath.Join(unpacked, filepath.FromSlash(h.Name))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(f, tr)
		f.Close()
	}
	installed := t.TempDir()
	for _, f := range pl.Files {
		src := filepath.Join(unpacked, filepath.FromSlash(f.From))
		b, err := os.ReadFile(src)
		if err != nil {
			t.Errorf("files: %s is not in the archive", f.From)
			continue
		}
		st, _ := os.Stat(src)
		os.WriteFile(filepath.Join(installed, f.To, filepath.Base(f.From)), b, st.Mode())
	}
	bin := filepath.Join(installed, pl.Bin)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v9.8.7") {
		t.Errorf("%s version: %v\n%s", pl.Bin, err, out)
	}
	if out, _ := exec.Command(bin, "--help").CombinedOutput(); !strings.Contains(string(out), "kubectl track") {
		t.Errorf("%s --help does not call itself kubectl track:\n%s", pl.Bin, out)
	}
	// The full archive: the three binaries.
	full := filepath.Join(dist, "trackrouter_v9.8.7_"+runtime.GOOS+"_"+runtime.GOARCH+".tar.gz")
	if _, err := os.Stat(full); err != nil {
		t.Error(err)
	}
	sums, _ := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if !strings.Contains(string(sums), pl.Sha256+"  "+path.Base(pl.URI)) {
		t.Errorf("SHA256SUMS:\n%s", sums)
	}

	// A version krew cannot take is refused before anything is built.
	cmd = exec.Command("../../hack/dist/dist.sh")
	cmd.Env = append(os.Environ(), "VERSION=latest", "DIST="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "want vMAJOR.MINOR.PATCH") {
		t.Errorf("VERSION=latest: %v\n%s", err, out)
	}
}
