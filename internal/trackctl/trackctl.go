// Package trackctl implements the trackctl commands: render, validate, check
// and diff service specs as users keep them in git.
package trackctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/weights"

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

// usageError is a wrong command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, env *env, args []string) error
	flags               func(fs *pflag.FlagSet, env *env)
}

var commands = []command{
	{"render", "FILE", "print the haproxy.cfg of a service spec", runRender, renderFlags},
	{"validate", "FILE...", "check specs and their haproxy.cfg with haproxy -c; exit 1 on any problem", runValidate, nil},
	{"check", "DIR --golden DIR", "validate every spec under DIR and compare with golden haproxy.cfg files", runCheck, checkFlags},
	{"diff", "OLD NEW", "show how haproxy.cfg and the weights change from one spec to another", runDiff, nil},
}

// env is what every command shares: output streams and render settings.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	render         haproxyconf.Options
	baseFile       string
	checker        haproxyconf.Checker

	// per-command flags
	output  string
	service string
	golden  string
	update  bool
}

// Run runs trackctl with args (without the program name) and returns the
// exit code; "-" as a file reads os.Stdin.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return RunIO(ctx, args, os.Stdin, stdout, stderr)
}

// RunIO is Run with its standard input given.
func RunIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "version") {
		fmt.Fprintln(stdout, version.String("trackctl"))
		return ExitOK
	}
	if len(args) == 2 && args[0] == "help" {
		args = []string{args[1], "--help"} // trackctl help render
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "trackctl: unknown command %q\n\n", args[0])
		usage(stderr)
		return ExitUsage
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	fs := pflag.NewFlagSet("trackctl "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	usageTo := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: trackctl %s %s [flags]\n\n%s.\n\nFlags:\n%s", cmd.name, cmd.args, capitalize(cmd.summary), fs.FlagUsages())
	}
	fs.Usage = func() {} // printed below: help on stdout, errors on stderr
	fs.StringVar(&e.baseFile, "base", "", "haproxy.cfg whose global, defaults and other sections are kept (default: built-in defaults)")
	fs.StringVar(&e.render.Namespace, "namespace", "", "namespace of the track Services (default: the ConfigMap's, else \"default\")")
	fs.StringVar(&e.render.ClusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain of the track Services")
	fs.StringVar(&e.render.Bind, "bind", "", "frontend listen address [host]:port (default: \":<port>\" from the spec)")
	fs.StringVar(&e.checker.Binary, "haproxy-bin", "haproxy", "haproxy binary used for haproxy -c")
	if cmd.flags != nil {
		cmd.flags(fs, e)
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usageTo(stdout)
			return ExitOK
		}
		fmt.Fprintf(stderr, "trackctl %s: %v\nSee 'trackctl %s --help'.\n", cmd.name, err, cmd.name)
		return ExitUsage
	}
	if e.baseFile != "" {
		b, err := os.ReadFile(e.baseFile)
		if err != nil {
			fmt.Fprintf(stderr, "trackctl: read base config: %v\n", err)
			return ExitUsage
		}
		e.render.Base = string(b)
	}
	err := cmd.run(ctx, e, fs.Args())
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errProblems):
		return ExitProblem
	case errors.Is(err, errInvalidInput):
		return ExitUsage
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "trackctl %s: %v\n", cmd.name, err)
		usageTo(stderr)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "trackctl %s: %v\n", cmd.name, err)
		return ExitProblem
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `trackctl works with trackrouter service specs: the service.yaml in a ConfigMap
that says how a service's requests are split between its tracks.

Usage: trackctl COMMAND [ARGS] [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %-18s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "  %-9s %-18s %s\n", "version", "", "print the version of trackctl (also --version)")
	fmt.Fprint(w, `
FILE is a bare service.yaml or Kubernetes manifests holding ConfigMaps with
the key service.yaml, or - for standard input. "trackctl help COMMAND" lists
a command's flags. Exit codes: 0 ok, 1 problems found (invalid spec,
haproxy -c failed, golden mismatch, differences), 2 wrong usage; diff, as
kubectl diff: 0 same, 1 different, 2 an invalid or unreadable spec.
`)
}

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// readSpecs parses every spec in a file.
// readSpecs reads the specs in file; "-" is standard input, so that
// "kubectl kustomize overlay | trackctl validate -" works.
func (e *env) readSpecs(file string) ([]*weights.Spec, error) {
	var data []byte
	var err error
	switch info, statErr := os.Stat(file); {
	case file == "-":
		data, err = io.ReadAll(io.LimitReader(e.stdin, weights.MaxInputBytes+1))
		file = "<stdin>"
	case statErr == nil && info.IsDir():
		return nil, fmt.Errorf("%s is a directory: trackctl check %s --golden DIR checks every spec under it", file, file)
	default:
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	return weights.Parse(file, data)
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
