// Package trackctl is the trackctl command line (also the kubectl plugin
// kubectl track): render, validate, check and diff specs as users keep them
// in git, status of the services in a cluster, and the release commands
// (deploy, promote, set-weight, rollback, history) on a cluster or a file.
// It stands beside router and controller, the other two products; nothing
// outside cmd/trackctl imports it.
package trackctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/weights"

	"github.com/trackrouter/trackrouter/internal/fsutil"
	"github.com/trackrouter/trackrouter/internal/suggest"
	"github.com/trackrouter/trackrouter/internal/version"
)

// Exit codes. Like diff(1): 1 means "not clean" (invalid, or different), 2
// means the command itself could not run as asked; diff, like kubectl diff,
// exits 2 when a spec is invalid.
const (
	ExitOK      = 0
	ExitProblem = 1
	ExitUsage   = 2
)

// errInvalidInput says diff could not compare: a spec is invalid or
// unreadable (printed already). Exit 2, as kubectl diff's errors.
var errInvalidInput = errors.New("invalid input")

// errProblems says that problems were found and already printed.
var errProblems = errors.New("problems found")

// apiError is a cluster that could not be read or written as asked (no
// kubeconfig, the API unreachable, a request refused): exit 2, as a wrong
// command line, so that cron tells it from "unhealthy".
type apiError struct{ err error }

func (e apiError) Error() string { return e.err.Error() }
func (e apiError) Unwrap() error { return e.err }

// usageError is a wrong command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// env is what every command shares: streams, render settings, flags.
type env struct {
	name           string // "trackctl", or "kubectl track" as a kubectl plugin
	stdin          io.Reader
	stdout, stderr io.Writer
	render         haproxyconf.Options
	baseFile       string
	checker        haproxyconf.Checker

	// per-command flags
	output     string // -o: text (cfg for render), json or yaml
	outputFile string
	service    string
	golden     string
	update     bool
	strict     bool
	verbose    bool

	stdinRead bool // "-" was read already

	// beforeWrite, when set, runs between a release command's read and its
	// write (tests of concurrent changes).
	beforeWrite func()
}

// Run runs trackctl with args (without the program name) and returns the
// exit code; "-" as a file reads os.Stdin.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return RunIO(ctx, args, os.Stdin, stdout, stderr)
}

// RunIO is Run with its standard input given.
func RunIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Main(ctx, "trackctl", args, stdin, stdout, stderr)
}

// Main runs the commands under the program name name: "trackctl", or
// "kubectl track" when the binary is installed as the kubectl plugin
// kubectl-track.
func Main(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := &errWriter{w: stdout}
	e := &env{name: name, stdin: stdin, stdout: out, stderr: stderr}
	root := e.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(out)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if out.err != nil {
		// Output that did not reach its reader (a full disk, a closed
		// pipe) is not a result.
		fmt.Fprintf(stderr, "%s: write the output: %v\n", name, out.err)
		return ExitProblem
	}
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errProblems):
		return ExitProblem
	case errors.Is(err, errInvalidInput):
		return ExitUsage
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\nSee '%s --help'.\n", cmd.CommandPath(), err, cmd.CommandPath())
		return ExitUsage
	case errors.As(err, new(apiError)):
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
		return ExitUsage
	case strings.HasPrefix(err.Error(), "unknown command"):
		// cobra's own, with its "Did you mean this?".
		msg := strings.ReplaceAll(strings.TrimRight(err.Error(), "\n"), `for "`+strings.ReplaceAll(name, " ", "-")+`"`, `for "`+name+`"`)
		fmt.Fprintf(stderr, "%s: %s\nSee '%s --help'.\n", name, msg, name)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
		return ExitProblem
	}
}

func (e *env) rootCommand() *cobra.Command {
	use := e.name
	if strings.Contains(use, " ") {
		// A kubectl plugin: its binary is kubectl-track; messages and
		// help say "kubectl track", and completion is its own.
		use = strings.ReplaceAll(use, " ", "-")
	}
	root := &cobra.Command{
		Use:         use,
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: e.name},
		Short:       "Render, validate, check and diff trackrouter service specs, and show their health",
		Long: `trackctl works with trackrouter service specs: the service.yaml in a ConfigMap
that says how a service's requests are split between its tracks. render,
validate, check and diff work on files (for GitOps CI); status reads the
cluster, with kubectl's --kubeconfig, --context, -n and -A.

FILE is a bare service.yaml or Kubernetes manifests holding ConfigMaps with
the key service.yaml, or - for standard input.

Exit codes: 0 ok, 1 problems found (an invalid spec, haproxy -c failed, a
golden file differs, --strict and a warning), 2 wrong usage. diff, like
kubectl diff: 0 same, 1 different, 2 an invalid or unreadable spec.`,
		Version:       version.String("trackctl"),
		SilenceUsage:  true,
		SilenceErrors: true,
		// No Run: "trackctl" alone prints the help.
	}
	root.SetVersionTemplate("{{.Version}}\n")
	// --version without cobra's -v, which check uses for --verbose.
	root.Flags().Bool("version", false, "print the version of trackctl")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(e.renderCommand(), e.validateCommand(), e.checkCommand(), e.diffCommand(), e.statusCommand(), e.versionCommand())
	root.AddCommand(e.releaseCommands()...)
	root.AddCommand(e.pipelineCommands()...)
	root.AddCommand(e.boardCommand())
	root.AddCommand(e.historyCommand())
	return root
}

func (e *env) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of trackctl (also --version)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(e.stdout, version.String("trackctl"))
			return err
		},
	}
}

// renderFlags are the flags of every command that renders haproxy.cfg.
func (e *env) renderFlags(fs *pflag.FlagSet) {
	fs.StringVar(&e.baseFile, "base", "", "haproxy.cfg whose global, defaults and other sections are kept (default: built-in defaults)")
	fs.StringVarP(&e.render.Namespace, "namespace", "n", "", "namespace of the track Services (default: the ConfigMap's, else \"default\")")
	fs.StringVar(&e.render.ClusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain of the track Services")
	fs.StringVar(&e.render.Bind, "bind", "", "frontend listen address [host]:port (default: \":<port>\" from the spec)")
	fs.StringVar(&e.checker.Binary, "haproxy-bin", "haproxy", "haproxy binary used for haproxy -c")
	fs.StringVar(&e.render.MetricsBind, "haproxy-metrics-bind", "", "add HAProxy's Prometheus exporter frontend on this [host]:port, as the sidecar does (default: none)")
}

// outputFlag is -o for a command with results. Each command has its own
// variable, since the defaults differ; prepare copies it to e.output.
func (e *env) outputFlag(fs *pflag.FlagSet, formats ...string) *string {
	return fs.StringP("output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
}

// prepare checks -o and reads --base; it runs before every command.
func (e *env) prepare(output *string, formats ...string) error {
	e.output = *output
	if !slices.Contains(formats, e.output) {
		hint := ""
		if strings.ContainsAny(e.output, "./") {
			hint = " (-o is the output format; write to a file with --output-file)"
		}
		return usageError{fmt.Sprintf("-o %q: want one of %s%s", e.output, strings.Join(formats, ", "), hint)}
	}
	if e.baseFile != "" {
		b, err := os.ReadFile(e.baseFile)
		if err != nil {
			return usageError{fmt.Sprintf("--base: %v", err)}
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return usageError{fmt.Sprintf("--base %s is empty: leave --base out for the built-in defaults", e.baseFile)}
		}
		e.render.Base = string(b)
	}
	return nil
}

// noArgs, exactArgs and minArgs say what is missing in the command's words.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("takes no arguments, got %q", args)}
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Sprintf("want %s, got %d argument(s)", what, len(args))}
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError{fmt.Sprintf("want %s", what)}
		}
		return nil
	}
}

// flagError turns a flag parse error into a usage error, with the closest
// flag name when one is near: "unknown flag: --servce (did you mean --service?)".
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	var bad string
	switch {
	case strings.HasPrefix(msg, "unknown flag: --"):
		bad = strings.TrimPrefix(msg, "unknown flag: --")
	case strings.HasPrefix(msg, "unknown shorthand flag: "):
		// "unknown shorthand flag: 'x' in -xyz": nothing to suggest.
	}
	if bad != "" {
		if name := closestFlag(cmd, bad); name != "" {
			msg += fmt.Sprintf(" (did you mean --%s?)", name)
		}
	}
	return usageError{msg}
}

func closestFlag(cmd *cobra.Command, bad string) string {
	var names []string
	visit := func(f *pflag.Flag) { names = append(names, f.Name) }
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	return suggest.Closest(bad, names)
}

// readSpecs reads the specs in file; "-" is standard input, so that
// "kubectl kustomize overlay | trackctl validate -" works.
func (e *env) readSpecs(file string) ([]*weights.Spec, error) {
	data, name, err := e.readInput(file)
	if err != nil {
		return nil, err
	}
	return weights.Parse(name, data)
}

// readInput reads a file, or standard input for "-", refusing what is not a
// regular file (a FIFO or a device would block or never end) and reading at
// most weights.MaxFileBytes+1 bytes.
func (e *env) readInput(file string) (data []byte, name string, err error) {
	if file == "-" {
		if e.stdinRead {
			return nil, "<stdin>", usageError{"- (standard input) can be given once"}
		}
		e.stdinRead = true
		data, err = io.ReadAll(io.LimitReader(e.stdin, weights.MaxFileBytes+1))
		return data, "<stdin>", err
	}
	if file == os.DevNull {
		return nil, file, nil // "no file": diff /dev/null NEW adds
	}
	if info, err := os.Stat(file); err == nil && info.IsDir() {
		return nil, file, usageError{fmt.Sprintf("%s is a directory, not a spec file: %s check %s --golden DIR checks every spec under it", file, e.name, file)}
	}
	data, err = fsutil.ReadRegular(file, weights.MaxFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, file, usageError{fmt.Sprintf("%s: no such file", file)}
	}
	return data, file, err
}

// pick returns the spec named service, or the only one when service is "".
func pick(file string, specs []*weights.Spec, service string) (*weights.Spec, error) {
	var names []string
	for _, s := range specs {
		if s.Service == service || service == "" && len(specs) == 1 {
			return s, nil
		}
		names = append(names, s.Service)
	}
	sort.Strings(names)
	if service == "" {
		return nil, usageError{fmt.Sprintf("%s holds %d services (%s): pick one with --service", file, len(specs), strings.Join(names, ", "))}
	}
	return nil, usageError{fmt.Sprintf("%s has no service %q (it has: %s)", file, service, strings.Join(names, ", "))}
}

// printProblems writes err one line per problem and returns errProblems.
func printProblems(w io.Writer, prefix string, err error) error {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "%s%s\n", prefix, line)
	}
	return errProblems
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (w *errWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}
