package trackctl

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/internal/textdiff"
	"github.com/trackrouter/trackrouter/weights"
)

func (e *env) diffCommand() *cobra.Command {
	formats := []string{"text", "json", "yaml"}
	var output *string
	cmd := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Show how a spec changes: its fields, weights with shares, and haproxy.cfg",
		Long: `Compare two versions of a spec, service by service: every changed field
(versions, replicas, groups, the default backend), the weights of each
backend with the share of requests each track gets before and after, and the
unified diff of haproxy.cfg. Either file may be - for standard input.

Exit codes as kubectl diff's: 0 no change, 1 changes, 2 an invalid or
unreadable spec.`,
		Example: `  trackctl diff <(git show main:manifests/account.yaml) manifests/account.yaml
  git show HEAD~1:manifests/account.yaml | trackctl diff - manifests/account.yaml
  trackctl diff old.yaml new.yaml -o json`,
		Args: exactArgs(2, "OLD and NEW files"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.prepare(output, formats...); err != nil {
				return err
			}
			return e.runDiff(args[0], args[1])
		},
	}
	output = e.outputFlag(cmd.Flags(), formats...)
	e.renderFlags(cmd.Flags())
	cmd.Flags().MarkHidden("haproxy-bin") // diff does not run haproxy
	return cmd
}

// runDiff compares two files' specs, matched by service name; with one spec
// on each side they are compared whatever their names.
func (e *env) runDiff(oldFile, newFile string) error {
	// A side without any spec (a file added or deleted in a pull request,
	// /dev/null) has no services: the other side's are added or removed.
	read := func(file string) ([]*weights.Spec, bool, error) {
		specs, err := e.readSpecs(file)
		if weights.IsNoSpec(err) {
			return nil, true, nil
		}
		return specs, false, err
	}
	olds, oldEmpty, err := read(oldFile)
	if err != nil {
		printProblems(e.stderr, "", err)
		return errInvalidInput
	}
	news, newEmpty, err := read(newFile)
	if err != nil {
		printProblems(e.stderr, "", err)
		return errInvalidInput
	}
	if oldEmpty && newEmpty {
		fmt.Fprintf(e.stderr, "no service spec in %s nor in %s\n", displayName(oldFile), displayName(newFile))
		return errInvalidInput
	}
	byName := make(map[string]*weights.Spec)
	for _, s := range olds {
		byName[s.Service] = s
	}
	var report DiffReport
	for _, n := range news {
		o, ok := byName[n.Service]
		if !ok && len(olds) == 1 && len(news) == 1 {
			o, ok = olds[0], true // a rename: compare the two anyway
		}
		if !ok {
			report.Services = append(report.Services, ServiceDiff{Service: n.Service, Status: "added"})
			continue
		}
		delete(byName, o.Service)
		d, err := e.diffOne(o, n)
		if err != nil {
			fmt.Fprintf(e.stderr, "service %s: %v\n", n.Service, err)
			return errInvalidInput
		}
		report.Services = append(report.Services, d)
	}
	var gone []string
	for name := range byName {
		gone = append(gone, name)
	}
	sort.Strings(gone)
	for _, name := range gone {
		report.Services = append(report.Services, ServiceDiff{Service: name, Status: "removed"})
	}
	for _, d := range report.Services {
		report.Changed = report.Changed || d.Status != "same"
	}
	if e.output != "text" {
		if err := printStructured(e.stdout, e.output, report); err != nil {
			return err
		}
	} else {
		e.printDiff(report, displayName(oldFile), displayName(newFile))
	}
	if report.Changed {
		return errProblems
	}
	return nil
}

func (e *env) diffOne(o, n *weights.Spec) (ServiceDiff, error) {
	d := ServiceDiff{Service: n.Service, Status: "same"}
	oc, err := haproxyconf.Render(o, e.render)
	if err != nil {
		return d, err
	}
	nc, err := haproxyconf.Render(n, e.render)
	if err != nil {
		return d, err
	}
	d.Config = textdiff.Unified(o.Source.File, n.Source.File, string(oc.Config), string(nc.Config))
	d.Spec = append(manifestChanges(o, n), weights.SpecChanges(o, n)...)
	d.Weights = weights.WeightChanges(o, n)
	if d.Config != "" || len(d.Spec) > 0 || len(d.Weights) > 0 {
		d.Status = "changed"
	}
	return d, nil
}

func (e *env) printDiff(report DiffReport, oldFile, newFile string) {
	w := e.stdout
	for _, d := range report.Services {
		switch d.Status {
		case "same":
			fmt.Fprintf(w, "service %s: no change\n", d.Service)
			continue
		case "added":
			fmt.Fprintf(w, "service %s: only in %s\n", d.Service, newFile)
			continue
		case "removed":
			fmt.Fprintf(w, "service %s: only in %s\n", d.Service, oldFile)
			continue
		}
		fmt.Fprint(w, d.Config)
		if len(d.Spec) > 0 {
			if d.Config != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "spec of service %s:\n", d.Service)
			for _, c := range d.Spec {
				fmt.Fprintf(w, "  %s\n", c)
			}
		}
		if len(d.Weights) > 0 {
			fmt.Fprintf(w, "\nweights of service %s:\n", d.Service)
			for _, c := range d.Weights {
				fmt.Fprintf(w, "  %s\n", c)
			}
		}
	}
}

// manifestChanges are the changes of the ConfigMap around a spec that the
// cluster sees: its name, namespace, and the label the controller needs.
func manifestChanges(o, n *weights.Spec) []weights.Change {
	var out []weights.Change
	add := func(field, a, b string) {
		if a != b {
			out = append(out, weights.Change{Field: field, Old: a, New: b})
		}
	}
	add("configMap", o.Source.Name, n.Source.Name)
	add("namespace", o.Source.Namespace, n.Source.Namespace)
	label := func(s *weights.Spec) string {
		switch {
		case s.Source.Name == "":
			return "" // a bare spec has no labels
		case s.Source.Labelled:
			return s.Service
		}
		return ""
	}
	if o.Source.Name != "" && n.Source.Name != "" {
		add("label "+weights.ServiceLabel, label(o), label(n))
	}
	return out
}
