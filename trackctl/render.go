package trackctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/weights"
)

func (e *env) renderCommand() *cobra.Command {
	formats := []string{"cfg", "json", "yaml"}
	var output *string
	cmd := &cobra.Command{
		Use:   "render FILE",
		Short: "Print the haproxy.cfg of a service spec",
		Long: `Print the haproxy.cfg the sidecar would run for a spec. The spec is checked
by its rules, not by haproxy -c (validate does both).`,
		Example: `  trackctl render examples/account-service/account-service.yaml
  trackctl render manifests.yaml --service account-service --output-file haproxy.cfg
  kubectl kustomize overlays/prod | trackctl render - -o json`,
		Args: exactArgs(1, "exactly one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.prepare(output, formats...); err != nil {
				return err
			}
			return e.runRender(args[0])
		},
	}
	fs := cmd.Flags()
	output = e.outputFlag(fs, formats...)
	fs.StringVar(&e.outputFile, "output-file", "", "write to this file instead of standard output")
	fs.StringVar(&e.service, "service", "", "the service to render when FILE holds several")
	e.renderFlags(fs)
	fs.MarkHidden("haproxy-bin") // render does not run haproxy
	return cmd
}

func (e *env) runRender(file string) error {
	specs, err := e.readSpecs(file)
	if ue := (usageError{}); errors.As(err, &ue) {
		return ue // no file there: the command line's mistake
	}
	if err != nil {
		return printProblems(e.stderr, "", err)
	}
	s, err := pick(file, specs, e.service)
	if err != nil {
		return err
	}
	rendered, err := haproxyconf.Render(s, e.render)
	if err != nil {
		return err
	}
	w := e.stdout
	if e.outputFile != "" {
		f, err := os.Create(e.outputFile)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if e.output == "cfg" {
		_, err = w.Write(rendered.Config)
	} else {
		err = printStructured(w, e.output, RenderResult{
			Service:   s.Service,
			Namespace: e.namespaceOf(s),
			Config:    string(rendered.Config),
			Backends:  backends(s),
		})
	}
	if err != nil {
		return err
	}
	if f, ok := w.(*os.File); ok && w != e.stdout {
		return f.Close()
	}
	return nil
}

// namespaceOf is the namespace s is rendered for.
func (e *env) namespaceOf(s *weights.Spec) string {
	switch {
	case e.render.Namespace != "":
		return e.render.Namespace
	case s.Source.Namespace != "":
		return s.Source.Namespace
	}
	return "default"
}

func (e *env) validateCommand() *cobra.Command {
	formats := []string{"text", "json", "yaml"}
	var output *string
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check specs by their rules and their haproxy.cfg with haproxy -c",
		Long: `Check every spec in every FILE: the spec's rules (each problem with its file,
line and field), what the cluster would read otherwise (a key written twice,
a bare spec with several documents, one service twice in a namespace), and
the rendered haproxy.cfg with haproxy -c. Warnings (a track with weight but
no replicas, a track or backend nothing reaches, a spec ConfigMap without
the trackrouter.dev/service label) do not fail it unless --strict.`,
		Example: `  trackctl validate examples/account-service/account-service.yaml
  kubectl kustomize overlays/prod | trackctl validate -
  trackctl validate --strict -o json manifests/*.yaml`,
		Args: minArgs(1, "at least one FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := e.prepare(output, formats...); err != nil {
				return err
			}
			return e.runValidate(cmd.Context(), args)
		},
	}
	fs := cmd.Flags()
	output = e.outputFlag(fs, formats...)
	fs.BoolVar(&e.strict, "strict", false, "fail (exit 1) on warnings too")
	e.renderFlags(fs)
	return cmd
}

// runValidate parses, renders and checks every spec in every file, printing
// one line per problem.
func (e *env) runValidate(ctx context.Context, files []string) error {
	report := Report{OK: true}
	for _, file := range files {
		specs, err := e.readSpecs(file)
		if ue := (usageError{}); errors.As(err, &ue) {
			return ue // no file there: the command line's mistake
		}
		if err != nil {
			report.Results = append(report.Results, Result{File: displayName(file), Status: "invalid", Problems: problems(err)})
			if e.output == "text" {
				printProblems(e.stdout, "", err)
			}
			report.OK = false
			continue
		}
		for _, s := range specs {
			if _, err := e.checkSpec(ctx, s, &report, true); err != nil {
				return err // haproxy missing: nothing was checked
			}
		}
	}
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

func displayName(file string) string {
	if file == "-" {
		return "<stdin>"
	}
	return file
}

func isCheckError(err error) bool {
	var ce *haproxyconf.CheckError
	return errors.As(err, &ce)
}

// checkSpec renders s and runs haproxy -c, as validate and check do: it
// appends s's Result to report (invalid, or with the backends' shares),
// prints the problems and warnings in text mode (and "ok" when okLine),
// and applies --strict. It returns the config when s is valid, nil when
// not; an error means haproxy -c could not run, and stops the command.
func (e *env) checkSpec(ctx context.Context, s *weights.Spec, report *Report, okLine bool) ([]byte, error) {
	text := e.output == "text"
	r := resultFor(s)
	cfg, err := e.renderChecked(ctx, s)
	var nc checkerError
	switch {
	case errors.As(err, &nc):
		return nil, err
	case err != nil:
		cfg = nil
		r.Status, r.Problems = "invalid", problems(err)
		report.OK = false
		if text {
			printProblems(e.stdout, s.Source.String()+": ", err)
		}
	default:
		r.Backends = backends(s)
		if text && okLine {
			verdict := "ok"
			if e.strict && len(s.Warnings) > 0 {
				verdict = "warnings" // --strict fails on them: not ok
			}
			fmt.Fprintf(e.stdout, "%s %s: service %s\n  shares: %s\n", verdict, s.Source, s.Service, sharesLine(s))
		}
	}
	if text {
		printWarnings(e.stdout, s)
	}
	if e.strict && len(s.Warnings) > 0 {
		report.OK = false
		if r.Status == "ok" {
			r.Status = "warnings"
		}
	}
	report.Results = append(report.Results, r)
	return cfg, nil
}

// checkerError is haproxy -c that could not run at all.
type checkerError struct{ err error }

func (e checkerError) Error() string {
	return e.err.Error() + " (install haproxy, e.g. apt-get install haproxy, or pass --haproxy-bin)"
}

func (e checkerError) Unwrap() error { return e.err }

// renderChecked renders s and runs haproxy -c on the result. An error that
// is not about the config (haproxy missing) is returned as is.
func (e *env) renderChecked(ctx context.Context, s *weights.Spec) ([]byte, error) {
	rendered, err := haproxyconf.Render(s, e.render)
	if err != nil {
		return nil, err
	}
	cfg := rendered.Config
	err = e.checker.Check(ctx, haproxyconf.ForOfflineCheck(cfg))
	if err != nil && !isCheckError(err) {
		return nil, checkerError{err}
	}
	return cfg, err
}

// sharesLine is each backend's shares in one line, what the weights mean:
// "canary: canary 5.0%, production 95.0%; enterprise: production 100.0%".
func sharesLine(s *weights.Spec) string {
	var parts []string
	for _, name := range s.BackendNames() {
		b := s.Backends[name]
		var shares []string
		for _, track := range b.Tracks() {
			shares = append(shares, track+" "+weights.Percent(b.Share(track)))
		}
		parts = append(parts, name+": "+strings.Join(shares, ", "))
	}
	return strings.Join(parts, "; ")
}
