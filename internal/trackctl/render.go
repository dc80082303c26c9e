package trackctl

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/trackrouter/trackrouter/haproxyconf"
	"github.com/trackrouter/trackrouter/weights"
)

func renderFlags(fs *pflag.FlagSet, e *env) {
	fs.StringVarP(&e.output, "output", "o", "", "write haproxy.cfg to this file instead of standard output")
	fs.StringVar(&e.service, "service", "", "the service to render when FILE holds several")
}

func runRender(ctx context.Context, e *env, args []string) error {
	if len(args) != 1 {
		return usageError{"want exactly one FILE"}
	}
	specs, err := e.readSpecs(args[0])
	if err != nil {
		return printProblems(e.stderr, "", err)
	}
	s, err := pick(args[0], specs, e.service)
	if err != nil {
		return err
	}
	rendered, err := haproxyconf.Render(s, e.render)
	if err != nil {
		return err
	}
	cfg := rendered.Config
	if e.output == "" {
		_, err = e.stdout.Write(cfg)
		return err
	}
	return os.WriteFile(e.output, cfg, 0o644)
}

// runValidate parses, renders and checks every spec in every file, printing
// one line per problem.
func runValidate(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"want at least one FILE"}
	}
	failed := false
	for _, file := range args {
		specs, err := e.readSpecs(file)
		if err != nil {
			failed = true
			printProblems(e.stdout, "", err)
			continue
		}
		for _, s := range specs {
			if _, err := renderChecked(ctx, e, s); err != nil {
				failed = true
				printProblems(e.stdout, s.Source.String()+": ", err)
				continue
			}
			fmt.Fprintf(e.stdout, "ok %s: service %s\n", s.Source, s.Service)
		}
	}
	if failed {
		return errProblems
	}
	return nil
}

// renderChecked renders s and runs haproxy -c on the result. An error that
// is not about the config (haproxy missing) stops the command.
func renderChecked(ctx context.Context, e *env, s *weights.Spec) ([]byte, error) {
	rendered, err := haproxyconf.Render(s, e.render)
	if err != nil {
		return nil, err
	}
	cfg := rendered.Config
	err = e.checker.Check(ctx, cfg)
	var ce *haproxyconf.CheckError
	if err != nil && !errors.As(err, &ce) {
		return nil, fmt.Errorf("%w (install haproxy, e.g. apt-get install haproxy, or pass --haproxy-bin)", err)
	}
	return cfg, err
}
