package trackctl

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/trackrouter/trackrouter/internal/textdiff"
	"github.com/trackrouter/trackrouter/weights"
)

func checkFlags(fs *pflag.FlagSet, e *env) {
	fs.StringVar(&e.golden, "golden", "", "directory of golden files, one <service>.cfg per service (required)")
	fs.BoolVar(&e.update, "update", false, "rewrite the golden files from the specs instead of comparing, and delete golden files of services that are gone")
}

// runCheck finds every spec in the manifests under a directory, validates
// and renders each, and compares the result with <golden>/<service>.cfg.
func runCheck(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 || e.golden == "" {
		return usageError{"want one DIR and --golden DIR"}
	}
	specs, failed, err := findSpecs(e, args[0])
	if err != nil {
		return err
	}
	if e.update {
		if err := os.MkdirAll(e.golden, 0o755); err != nil {
			return err
		}
	}
	want := make(map[string]bool)
	for _, s := range specs {
		name := s.Service + ".cfg"
		want[name] = true
		cfg, err := renderChecked(ctx, e, s)
		if err != nil {
			failed = true
			printProblems(e.stdout, s.Source.String()+": ", err)
			continue
		}
		golden := filepath.Join(e.golden, name)
		if e.update {
			if err := os.WriteFile(golden, cfg, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "updated %s\n", golden)
			continue
		}
		old, err := os.ReadFile(golden)
		switch {
		case os.IsNotExist(err):
			failed = true
			fmt.Fprintf(e.stdout, "%s: no golden file %s (run with --update to write it)\n", s.Source, golden)
		case err != nil:
			return err
		case !bytes.Equal(old, cfg):
			failed = true
			fmt.Fprintf(e.stdout, "%s: haproxy.cfg differs from %s (run with --update to accept):\n%s",
				s.Source, golden, textdiff.Unified(golden, "rendered from "+s.Source.File, string(old), string(cfg)))
		default:
			fmt.Fprintf(e.stdout, "ok %s: service %s matches %s\n", s.Source, s.Service, golden)
		}
	}
	if failed {
		// A file with errors may hold services whose golden files must stay.
		return errProblems
	}
	stale, err := staleGolden(e.golden, want)
	if err != nil {
		return err
	}
	for _, path := range stale {
		if e.update {
			if err := os.Remove(path); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted %s\n", path)
			continue
		}
		failed = true
		fmt.Fprintf(e.stdout, "%s: no spec for this service any more (run with --update to delete it)\n", path)
	}
	if failed {
		return errProblems
	}
	return nil
}

// findSpecs parses every .yaml/.yml file under dir. Files that hold no spec
// (other manifests) are skipped; files with errors are reported. Two specs
// for one service name are an error, since they would share a golden file.
func findSpecs(e *env, dir string) (specs []*weights.Spec, failed bool, err error) {
	seen := make(map[string]string)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		found, err := e.readSpecs(path)
		if weights.IsNoSpec(err) {
			return nil
		}
		if err != nil {
			failed = true
			printProblems(e.stdout, "", err)
			return nil
		}
		for _, s := range found {
			if other, dup := seen[s.Service]; dup {
				failed = true
				fmt.Fprintf(e.stdout, "%s: service %s is also defined in %s; service names must be unique under %s\n", s.Source, s.Service, other, dir)
				continue
			}
			seen[s.Service] = s.Source.String()
			specs = append(specs, s)
		}
		return nil
	})
	if err == nil && len(specs) == 0 && !failed {
		err = fmt.Errorf("no service spec found under %s", dir)
	}
	return specs, failed, err
}

// staleGolden lists the .cfg files in dir that no spec renders to.
func staleGolden(dir string, want map[string]bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, ent := range entries {
		if !ent.IsDir() && strings.HasSuffix(ent.Name(), ".cfg") && !want[ent.Name()] {
			stale = append(stale, filepath.Join(dir, ent.Name()))
		}
	}
	slices.Sort(stale)
	return stale, nil
}
