package trackctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

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
		r := resultFor(s)
		r.Golden = filepath.Join(e.golden, f.golden)
		cfg, err := e.renderChecked(ctx, s)
		if err != nil {
			var nc checkerError
			if errors.As(err, &nc) {
				return err
			}
			report.OK, invalid = false, true
			r.Status, r.Problems = "invalid", problems(err)
			if text {
				printProblems(e.stdout, s.Source.String()+": ", err)
			}
		} else {
			r.Backends = backends(s)
			ok = append(ok, rendered{f, cfg, len(report.Results)})
		}
		if text {
			printWarnings(e.stdout, s)
		}
		if e.strict && len(s.Warnings) > 0 {
			report.OK = false
		}
		report.Results = append(report.Results, r)
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
			if err := writeGolden(path, x.cfg); err != nil {
				return err
			}
			r.Status = "updated"
			if text {
				fmt.Fprintf(e.stdout, "updated %s\n", path)
			}
			continue
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

func writeGolden(path string, cfg []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, cfg, 0o644)
}

// findSpecs parses every .yaml/.yml file under dir. Files that hold no spec
// are listed in skipped; files with errors become Results. Two specs for one
// namespace and service in one directory are an error: they would share a
// golden file, and the cluster would keep one of them.
func (e *env) findSpecs(dir string) (specs []found, skipped []Skipped, errs []Result, err error) {
	if info, statErr := os.Stat(dir); statErr != nil {
		return nil, nil, nil, statErr
	} else if !info.IsDir() {
		return nil, nil, nil, usageError{fmt.Sprintf("%s is not a directory: %s validate %s checks one file", dir, e.name, dir)}
	}
	seen := make(map[string]string) // golden path -> source
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") && d.Name() != ".github" {
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
		got, err := e.readSpecs(path)
		if weights.IsNoSpec(err) {
			skipped = append(skipped, Skipped{path, "no service spec"})
			return nil
		}
		if err != nil && isTemplate(path, err) {
			skipped = append(skipped, Skipped{path, "a template ({{ }}), not YAML"})
			return nil
		}
		if err != nil {
			errs = append(errs, Result{File: path, Status: "invalid", Problems: problems(err)})
			return nil
		}
		rel, err := filepath.Rel(dir, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, s := range got {
			golden := filepath.Join(rel, e.namespaceOf(s), s.Service+".cfg")
			if other, dup := seen[golden]; dup {
				errs = append(errs, Result{File: path, Service: s.Service, Status: "invalid", Problems: []Problem{{
					File: path, Line: s.Source.Line, Field: "service",
					Message: fmt.Sprintf("service %s in namespace %s is also defined in %s, in the same directory: their Deployments and Services would collide", s.Service, e.namespaceOf(s), other),
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

// isTemplate says that a file YAML cannot read is a template: Helm's, or
// another tool's that renders manifests from {{ }}.
func isTemplate(path string, err error) bool {
	if !strings.Contains(err.Error(), "invalid YAML") {
		return false
	}
	data, readErr := os.ReadFile(path)
	return readErr == nil && bytes.Contains(data, []byte("{{"))
}

// staleGolden lists the .cfg files under dir that no spec renders to.
func staleGolden(dir string, want map[string]bool) ([]string, error) {
	var stale []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == dir {
				return filepath.SkipAll
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".cfg") {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if !want[rel] {
			stale = append(stale, path)
		}
		return nil
	})
	slices.Sort(stale)
	return stale, err
}
