package trackctl

import (
	"context"
	"fmt"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/textdiff"
	"github.com/trackrouter/trackrouter/weights"
)

// runDiff renders two versions of a spec and prints the haproxy.cfg diff and
// a one-line-per-backend summary of the weight changes. Files with several
// specs are compared service by service.
func runDiff(ctx context.Context, e *env, args []string) error {
	if len(args) != 2 {
		return usageError{"want OLD and NEW files"}
	}
	// Exit codes as kubectl diff's: 0 same, 1 different, 2 an error (an
	// invalid or unreadable spec).
	olds, err := e.readSpecs(args[0])
	if err != nil {
		printProblems(e.stderr, "", err)
		return errInvalidInput
	}
	news, err := e.readSpecs(args[1])
	if err != nil {
		printProblems(e.stderr, "", err)
		return errInvalidInput
	}
	byName := make(map[string]*weights.Spec)
	for _, s := range olds {
		byName[s.Service] = s
	}
	changed := false
	for _, n := range news {
		o, ok := byName[n.Service]
		if !ok {
			if len(olds) == 1 && len(news) == 1 {
				o = olds[0] // a rename: compare the two anyway
			} else {
				fmt.Fprintf(e.stdout, "service %s: only in %s\n", n.Service, args[1])
				changed = true
				continue
			}
		}
		delete(byName, o.Service)
		c, err := diffOne(e, o, n)
		if err != nil {
			return err
		}
		changed = changed || c
	}
	for name := range byName {
		fmt.Fprintf(e.stdout, "service %s: only in %s\n", name, args[0])
		changed = true
	}
	if changed {
		return errProblems
	}
	return nil
}

func diffOne(e *env, o, n *weights.Spec) (bool, error) {
	oc, err := haproxyconf.Render(o, e.render)
	if err != nil {
		return false, err
	}
	nc, err := haproxyconf.Render(n, e.render)
	if err != nil {
		return false, err
	}
	d := textdiff.Unified(o.Source.File, n.Source.File, string(oc.Config), string(nc.Config))
	specChanges := weights.SpecChanges(o, n)
	if d == "" && len(specChanges) == 0 {
		fmt.Fprintf(e.stdout, "service %s: no change\n", n.Service)
		return false, nil
	}
	fmt.Fprint(e.stdout, d)
	if len(specChanges) > 0 {
		if d != "" {
			fmt.Fprintln(e.stdout)
		}
		fmt.Fprintf(e.stdout, "spec of service %s:\n", n.Service)
		for _, c := range specChanges {
			fmt.Fprintf(e.stdout, "  %s\n", c)
		}
	}
	changes := weights.WeightChanges(o, n)
	if len(changes) > 0 {
		fmt.Fprintf(e.stdout, "\nweights of service %s:\n", n.Service)
	}
	for _, c := range changes {
		fmt.Fprintf(e.stdout, "  %s\n", c)
	}
	return true, nil
}
