package trackctl

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/fsutil"
	"github.com/trackrouter/trackrouter/internal/textdiff"
	"github.com/trackrouter/trackrouter/weights"
)

func (e *env) checkCommand() *cobra.Command {
	formats := []string{"text", "json", "yaml"}
	var output *string
	cmd := &cobra.Command{
		Use:   "check DIR --golden DIR",
		Short: "Validate every spec under a directory and compare with golden haproxy.cfg files",
		Long: `Find every spec under DIR (ConfigMaps with the key service.yaml or the
trackrouter.dev/service label, and bare specs: a mapping with service and
backends or tracks), validate each as validate does, and compare its
haproxy.cfg with the golden file <golden>/<dir>/<namespace>/<service>.cfg,
where <dir> is the spec's directory under DIR. Other YAML (Helm values, CI
workflows, kustomizations, other manifests) is skipped; -v lists it.

With --update the golden files are written from the specs and golden files
no spec renders any more are deleted; nothing is written or deleted while any
spec has errors. Commit the golden directory with the specs, so that a pull
request shows the haproxy.cfg it changes.`,
		Example: `  trackctl check manifests/ --golden golden/
  trackctl check manifests/ --golden golden/ --update
  trackctl check manifests/ --golden golden/ --strict -o json`,
		Args: exactArgs(1, "one DIR (and --golden DIR)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if e.golden == "" {
				return usageError{"--golden DIR is required: the directory of golden haproxy.cfg files"}
			}
			if err := goldenOutside(args[0], e.golden); err != nil {
				return err
			}
			if err := e.prepare(output, formats...); err != nil {
				return err
			}
			return e.runCheck(cmd.Context(), args[0])
		},
	}
	fs := cmd.Flags()
	output = e.outputFlag(fs, formats...)
	fs.StringVar(&e.golden, "golden", "", "directory of golden files, <dir>/<namespace>/<service>.cfg per spec (required)")
	fs.BoolVar(&e.update, "update", false, "write the golden files from the specs instead of comparing, and delete golden files of services that are gone")
	fs.BoolVar(&e.strict, "strict", false, "fail (exit 1) on warnings too")
	fs.BoolVarP(&e.verbose, "verbose", "v", false, "also list the YAML files that hold no spec")
	e.renderFlags(fs)
	return cmd
}

// found is a spec and the golden file it renders to.
type found struct {
	spec   *weights.Spec
	golden string // relative to --golden
}

// runCheck finds every spec in the manifests under a directory, validates
// and renders each, and compares the result with its golden file.
func (e *env) runCheck(ctx context.Context, dir string) error {
	report := Report{OK: true}
	text := e.output == "text"
	specs, skipped, fileErrs, err := e.findSpecs(dir)
	if err != nil {
		return err
	}
	report.Skipped = skipped
	if text && e.verbose {
		for _, f := range skipped {
			fmt.Fprintf(e.stdout, "skipped %s: %s\n", f.Path, f.Reason)
		}
	}
	invalid := len(fileErrs) > 0
	for _, r := range fileErrs {
		report.OK = false
		report.Results = append(report.Results, r)
		if text {
			for _, p := range r.Problems {
				fmt.Fprintln(e.stdout, problemLine(r.File, p))
			}
		}
	}
	type rendered struct {
		found
		cfg []byte
		res int // index in report.Results
	}
	var ok []rendered
	want := make(map[string]bool)
	for _, f := range specs {
		s := f.spec
		want[f.golden] = true
		cfg, err := e.checkSpec(ctx, s, &report, false)
		if err != nil {
			return err
		}
		res := len(report.Results) - 1
		report.Results[res].Golden = filepath.Join(e.golden, f.golden)
		if cfg == nil {
			invalid = true
			continue
		}
		ok = append(ok, rendered{f, cfg, res})
	}
	if e.update && invalid {
		// A file with errors may hold services whose golden files must stay.
		if text {
			fmt.Fprintln(e.stdout, "no golden file written or deleted: fix the problems above first")
		}
		return e.finish(report)
	}
	for _, x := range ok {
		r := &report.Results[x.res]
		path := r.Golden
		if e.update {
			if err := writeGolden(e.golden, path, x.cfg); err != nil {
				return err
			}
			r.Status = "updated"
			if text {
				fmt.Fprintf(e.stdout, "updated %s\n", path)
			}
			continue
		}
		if err := safePath(e.golden, path); err != nil {
			return err
		}
		old, err := os.ReadFile(path)
		switch {
		case os.IsNotExist(err):
			report.OK = false
			r.Status = "missing-golden"
			if text {
				fmt.Fprintf(e.stdout, "%s: no golden file %s (run with --update to write it)\n", x.spec.Source, path)
			}
		case err != nil:
			return err
		case !bytes.Equal(old, x.cfg):
			report.OK = false
			r.Status = "differs"
			r.Diff = textdiff.Unified(path, "rendered from "+x.spec.Source.File, string(old), string(x.cfg))
			if text {
				fmt.Fprintf(e.stdout, "%s: haproxy.cfg differs from %s (run with --update to accept):\n%s", x.spec.Source, path, r.Diff)
			}
		default:
			if text {
				fmt.Fprintf(e.stdout, "ok %s: service %s matches %s\n", x.spec.Source, x.spec.Service, path)
			}
		}
	}
	if !invalid {
		// Stale golden files are only judged when every spec was read.
		stale, err := staleGolden(e.golden, want)
		if err != nil {
			return err
		}
		for _, path := range stale {
			r := Result{File: path, Golden: path, Status: "stale-golden"}
			if e.update {
				if err := os.Remove(path); err != nil {
					return err
				}
				r.Status = "deleted"
				if text {
					fmt.Fprintf(e.stdout, "deleted %s\n", path)
				}
			} else {
				report.OK = false
				if text {
					fmt.Fprintf(e.stdout, "%s: no spec for this service any more (run with --update to delete it)\n", path)
				}
			}
			report.Results = append(report.Results, r)
		}
	}
	return e.finish(report)
}

func (e *env) finish(report Report) error {
	if e.output != "text" {
		if err := printStructured(e.stdout, e.output, report); err != nil {
			return err
		}
	}
	if !report.OK {
		return errProblems
	}
	return nil
}

func problemLine(file string, p Problem) string {
	fe := weights.FieldError{File: p.File, Line: p.Line, Field: p.Field, Msg: p.Message}
	if fe.File == "" {
		fe.File = file
	}
	return fe.Error()
}

func writeGolden(root, path string, cfg []byte) error {
	if err := safePath(root, path); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := safePath(root, path); err != nil { // a link made meanwhile
		return err
	}
	return fsutil.WriteAtomic(path, cfg, 0o644, -1, -1)
}

// specMarkers are what a file holding a spec must contain: the ConfigMap
// key or label, or a bare spec's fields. A file with none of them (a CI
// workflow, Helm values, a compose file with anchors, a 20 MiB CRD bundle)
// is skipped without being parsed, so its YAML dialect cannot fail check.
var specMarkers = [][]byte{[]byte(weights.DataKey), []byte(weights.ServiceLabel), []byte("backends:"), []byte("tracks:")}

// findSpecs parses every .yaml/.yml file under dir. Files that hold no spec
// are listed in skipped; files with errors become Results. Two specs for one
// namespace and service, or one ConfigMap twice, in one directory are an
// error: they would share a golden file, and the cluster keeps one of them.
func (e *env) findSpecs(dir string) (specs []found, skipped []Skipped, errs []Result, err error) {
	info, statErr := os.Stat(dir)
	if statErr != nil {
		return nil, nil, nil, usageError{statErr.Error()}
	} else if !info.IsDir() {
		return nil, nil, nil, usageError{fmt.Sprintf("%s is not a directory: %s validate %s checks one file", dir, e.name, dir)}
	}
	root := dir
	if l, err := os.Lstat(dir); err == nil && l.Mode()&fs.ModeSymlink != 0 {
		root = dir + string(filepath.Separator) // walk into a symlinked DIR
	}
	seen := make(map[string]string) // golden path -> source
	objects := make(map[string]string)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != root {
				errs = append(errs, Result{File: path, Status: "invalid", Problems: []Problem{{File: path, Message: err.Error()}}})
				return nil
			}
			return err
		}
		if d.IsDir() {
			if path != root && strings.HasPrefix(d.Name(), ".") && d.Name() != ".github" {
				return filepath.SkipDir // .git and the like
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), "Chart.yaml")); err == nil && d.Name() == "templates" {
				skipped = append(skipped, Skipped{path + string(filepath.Separator), "Helm chart templates (check what helm template renders instead)"})
				return filepath.SkipDir
			}
			return nil
		}
		if !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		if info, err := os.Stat(path); err != nil || !info.Mode().IsRegular() {
			skipped = append(skipped, Skipped{path, "not a regular file"})
			return nil
		}
		data, _, err := e.readInput(path)
		if err != nil {
			errs = append(errs, Result{File: path, Status: "invalid", Problems: []Problem{{File: path, Message: err.Error()}}})
			return nil
		}
		if !containsAny(data, specMarkers) {
			skipped = append(skipped, Skipped{path, "no service spec"})
			return nil
		}
		got, err := weights.Parse(path, data)
		if weights.IsNoSpec(err) {
			skipped = append(skipped, Skipped{path, "no service spec"})
			return nil
		}
		if err != nil {
			r := Result{File: path, Status: "invalid", Problems: problems(err)}
			if bytes.Contains(data, []byte("{{")) {
				r.Problems = append(r.Problems, Problem{File: path, Message: "this looks like a template ({{ }}): check what it renders to instead"})
			}
			errs = append(errs, r)
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, s := range got {
			ns := e.namespaceOf(s)
			if s.Source.Name != "" {
				key := filepath.Join(rel, ns, "configmap", s.Source.Name)
				if other, dup := objects[key]; dup {
					errs = append(errs, Result{File: path, Service: s.Service, Status: "invalid", Problems: []Problem{{
						File: path, Line: s.Source.Line,
						Message: fmt.Sprintf("ConfigMap %s/%s is also defined in %s, in the same directory: the cluster keeps only the one applied last", ns, s.Source.Name, other),
					}}})
					continue
				}
				objects[key] = s.Source.String()
			}
			golden := filepath.Join(rel, ns, s.Service+".cfg")
			if other, dup := seen[golden]; dup {
				errs = append(errs, Result{File: path, Service: s.Service, Status: "invalid", Problems: []Problem{{
					File: path, Line: s.Source.Line, Field: "service",
					Message: fmt.Sprintf("service %s in namespace %s is also defined in %s, in the same directory: their Deployments and Services would collide", s.Service, ns, other),
				}}})
				continue
			}
			seen[golden] = s.Source.String()
			specs = append(specs, found{s, golden})
		}
		return nil
	})
	if err == nil && len(specs) == 0 && len(errs) == 0 {
		err = fmt.Errorf("no service spec found under %s", dir)
	}
	return specs, skipped, errs, err
}

func containsAny(data []byte, markers [][]byte) bool {
	for _, m := range markers {
		if bytes.Contains(data, m) {
			return true
		}
	}
	return false
}

// staleGolden lists the golden files under dir that no spec renders to:
// files in the layout (<dir>/<namespace>/<service>.cfg) that trackrouter
// wrote (its header line). Any other file is not check's to judge or
// delete, and symbolic links are never followed.
func staleGolden(dir string, want map[string]bool) ([]string, error) {
	var stale []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == dir {
				return filepath.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(path, ".cfg") {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || want[rel] || !strings.Contains(rel, string(filepath.Separator)) {
			return err
		}
		if head, err := readHead(path, len(haproxyconf.HeaderPrefix)); err != nil || head != haproxyconf.HeaderPrefix {
			return nil
		}
		stale = append(stale, path)
		return nil
	})
	slices.Sort(stale)
	return stale, err
}

func readHead(path string, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, n)
	m, _ := io.ReadFull(f, b)
	return string(b[:m]), nil
}

// safePath checks that path, under root, holds no symbolic link on the way
// and, if it exists, is a regular file: a golden file must not send a read
// (whose diff is printed in CI logs) or a write elsewhere.
func safePath(root, path string) error {
	rel, err := filepath.Rel(root, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s is outside the golden directory %s", path, root)
	}
	cur := root
	parts := strings.Split(rel, string(filepath.Separator))
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		info, err := os.Lstat(cur)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link: golden files and their directories must be real ones (refused)", cur)
		}
		if i == len(parts)-1 && !info.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file (refused)", cur)
		}
	}
	return nil
}

// goldenOutside refuses a golden directory that is DIR or holds it (or is
// /): check --update deletes stale golden files under it.
func goldenOutside(dir, golden string) error {
	d, err1 := filepath.Abs(dir)
	g, err2 := filepath.Abs(golden)
	if err1 != nil || err2 != nil {
		return nil
	}
	if rel, err := filepath.Rel(g, d); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
		return usageError{fmt.Sprintf("--golden %s is %s or holds it: give the golden files a directory of their own (e.g. golden/ next to %s)", golden, dir, dir)}
	}
	return nil
}
