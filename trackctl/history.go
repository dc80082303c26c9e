package trackctl

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/trackrouter/trackrouter/weights"
)

func (e *env) historyCommand() *cobra.Command {
	o := &releaseOptions{}
	cmd := &cobra.Command{
		Use:   "history SERVICE",
		Short: "List the recent changes of a service's spec: who, when, what, why",
		Long: `In the cluster: the changes trackctl made to the spec ConfigMap, from its
trackrouter.dev/history annotation (the last 20; each also left a Normal Event
SpecChanged), newest first. With -f FILE in a git repository: the commits that changed the
file, with what each changed in the service's spec (versions, replicas,
groups, weights with shares); COMMAND is the commit's subject and REASON its
"Reason:" trailer, which a release command on a file given --reason prints
in the git commit command it suggests.`,
		Example: `  trackctl history account-service -n shop
  trackctl history account-service -f manifests/account-service.yaml`,
		Args: exactArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "text", "json", "yaml":
			default:
				return usageError{fmt.Sprintf("-o %q: want one of text, json, yaml", o.output)}
			}
			var (
				entries []HistoryEntry
				err     error
			)
			if o.file != "" {
				// The service must be in the file as it is now.
				specs, rerr := e.readSpecs(o.file)
				if rerr != nil {
					return rerr
				}
				if _, perr := pick(o.file, specs, args[0]); perr != nil {
					return perr
				}
				entries, err = gitHistory(cmd.Context(), o.file, args[0])
			} else {
				_, cm, cerr := e.specConfigMap(cmd.Context(), o, args[0])
				if cerr != nil {
					return cerr
				}
				// Stored oldest first (appended); shown newest first, as
				// -f (git log) and the board show it.
				entries = readHistory(cm)
				slices.Reverse(entries)
			}
			if err != nil {
				return err
			}
			if o.output != "text" {
				if entries == nil {
					entries = []HistoryEntry{}
				}
				return printStructured(e.stdout, o.output, entries)
			}
			if len(entries) == 0 {
				fmt.Fprintf(e.stdout, "%s: no recorded change\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tUSER\tCOMMAND\tREASON")
			for _, h := range entries {
				who := h.User
				if h.Commit != "" {
					who += " (" + h.Commit + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Time.Format(time.RFC3339), printable(who), printable(h.Command), printable(h.Reason))
				for _, c := range h.Changes {
					fmt.Fprintf(tw, "\t\t  %s\t\n", c)
				}
			}
			return tw.Flush()
		},
	}
	fs := cmd.Flags()
	o.kube.add(fs)
	fs.Lookup("all-namespaces").Hidden = true
	fs.StringVarP(&o.file, "filename", "f", "", "list the git history of this manifest instead of the cluster's")
	fs.StringVarP(&o.output, "output", "o", "text", "output format: text, json, yaml")
	return cmd
}

// gitHistory lists the commits that changed file, newest first, with what
// each changed in service's spec.
func gitHistory(ctx context.Context, file, service string) ([]HistoryEntry, error) {
	dir, base := filepath.Dir(file), filepath.Base(file)
	// --follow across renames; --name-only gives, per commit, the path the
	// file had then (from the repository's root), to read it as it was.
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "log", "--follow", "--name-only",
		"--format=%x1e%H%x1f%aI%x1f%an <%ae>%x1f%s%x1f%(trailers:key="+reasonTrailer+",valueonly,separator=%x3B )", "--", base).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("git log %s: %s", file, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("git log %s: %w (history of a file needs git)", file, err)
	}
	var entries []HistoryEntry
	var commits []HistoryEntry
	var specs []*weights.Spec
	for _, record := range strings.Split(string(out), "\x1e") {
		lines := strings.Split(strings.TrimSpace(record), "\n")
		f := strings.Split(lines[0], "\x1f")
		if len(f) != 5 {
			continue
		}
		path := ""
		for _, l := range lines[1:] {
			if l = strings.TrimSpace(l); l != "" {
				path = l
			}
		}
		t, _ := time.Parse(time.RFC3339, f[1])
		// The commit's subject is its command; a "Reason:" trailer (what
		// a release command on a file suggests) its reason.
		h := HistoryEntry{Time: t.UTC(), User: f[2], Command: f[3], Reason: strings.TrimSpace(f[4]), Commit: f[0][:12]}
		var spec *weights.Spec
		if path != "" {
			if data, err := exec.CommandContext(ctx, "git", "-C", dir, "show", f[0]+":"+path).Output(); err == nil {
				if all, err := weights.Parse(file, data); err == nil {
					spec, _ = pick(file, all, service)
				}
			}
		}
		commits = append(commits, h)
		specs = append(specs, spec)
	}
	for i, h := range commits {
		// The change of a commit is from the version before it (the next
		// in this newest-first list).
		switch {
		case specs[i] == nil:
			h.Changes = []string{"(the spec of " + service + " is invalid or missing in this commit)"}
		case i+1 < len(commits) && specs[i+1] != nil:
			h.Changes = weights.ChangeWords(specs[i+1], specs[i])
			if h.Changes == nil {
				h.Changes = []string{"(no change of the spec)"}
			}
		case i+1 == len(commits):
			h.Changes = []string{"(first version)"}
		}
		entries = append(entries, h)
	}
	return entries, nil
}

// printable replaces control characters (a terminal escape in a commit
// message or an annotation) by spaces, for the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}
