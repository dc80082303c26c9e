package trackctl

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/internal/board"
	"github.com/trackrouter/trackrouter/internal/fleet"
)

// boardOptions are board's flags.
type boardOptions struct {
	kube         kubeFlags
	addr         string
	allowHosts   []string
	minEndpoints int
	samples      string
	every        time.Duration
	readOnly     bool
	// client replaces the kubeconfig (tests).
	client kubernetes.Interface
	// ready, when set, is told the address served (tests).
	ready func(addr string)
	// requests, when set, counts the API requests (benchmarks).
	requests *atomic.Int64
}

func (e *env) boardCommand() *cobra.Command {
	o := &boardOptions{}
	cmd := &cobra.Command{
		Use:   "board",
		Short: "Serve every service's health and release at a glance, live, in a browser",
		Long: `Serve a web page with one row per service and one column per stage, in the
spec's order: the version each track runs, its ready endpoints, the share of
each group's traffic it gets, health in colour and in words (the problems
trackctl status finds), leftovers, how many HAProxy pods run the current spec,
and the release in flight. A page per service shows its tracks, backends with
the live weights on every HAProxy pod, the pods' reports and the spec's history,
and plots each track's requests/s, 5xx/s and p95 latency of the last minutes.

The plots come from each HAProxy pod's sidecar (its /samples, the numbers the
canary analysis judges), read every --samples-every while a page of the service
is open, whatever the number of viewers; none while no service page is open.
--samples=proxy (the default) reads them through the API server's pod proxy on
your credentials (it needs get on pods/proxy: one request per HAProxy pod per
read); --samples=direct reads the address each pod reports, for a board that
runs where pod addresses answer; --samples=off draws no plot.

The board runs on your credentials (kubeconfig, --context, -n or -A), listens on
127.0.0.1 by default, prints its URL and opens nothing by itself. It watches the
API (one list and one watch per kind, whatever the number of viewers) and pushes
each change to every open page (server-sent events); a lost API connection is
shown on the page.

A service page whose release is in flight offers its actions as buttons:
approve, promote, pause or resume, abort, roll back. Each runs the trackctl
command of its name, on your credentials, recorded under your name, exactly
as in a terminal (and refused as there when you lack the right). Every
button carries a token made for this run of the board, so a page of another
site cannot press one for you; --read-only offers none.`,
		Example: `  trackctl board -A
  trackctl board -n shop --addr 127.0.0.1:8089`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return e.runBoard(cmd.Context(), o)
		},
	}
	fs := cmd.Flags()
	o.kube.add(fs)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8089", "listen here (host:port); port 0 picks a free one")
	fs.StringSliceVar(&o.allowHosts, "allow-host", nil, "a host name the board answers to beside IP addresses and localhost (requests with another Host are refused, so that no web page can read the board by DNS rebinding); repeatable")
	fs.IntVar(&o.minEndpoints, "min-endpoints", 2, "ready endpoints each track needs to be healthy")
	fs.StringVar(&o.samples, "samples", "proxy", "how the service pages read the sidecars' measurements for their plots: proxy (the API server's pod proxy), direct (the pods' addresses) or off")
	fs.BoolVar(&o.readOnly, "read-only", false, "offer no action on the service pages (approve, promote, pause, resume, abort, roll back)")
	fs.DurationVar(&o.every, "samples-every", 5*time.Second, "read an open service page's sidecars this often (at least 1s)")
	return cmd
}

func (e *env) runBoard(ctx context.Context, o *boardOptions) error {
	// The flags first: a usage error before any API request.
	switch o.samples {
	case "proxy", "", "direct", "off":
	default:
		return usageError{fmt.Sprintf("--samples %q: want proxy, direct or off", o.samples)}
	}
	every := o.every
	if every == 0 {
		every = 5 * time.Second
	}
	if every < time.Second {
		return usageError{fmt.Sprintf("--samples-every %s: want at least 1s (each read is a request to every HAProxy pod)", o.every)}
	}
	client, ns := o.client, o.kube.namespace
	if client == nil {
		var err error
		if client, ns, err = o.kube.client(o.requests); err != nil {
			return err
		}
	}
	if o.kube.allNamespaces {
		ns = ""
	} else if ns == "" {
		ns = "default"
	}
	var fetch board.Fetcher
	switch o.samples {
	case "proxy", "":
		fetch = board.ProxyFetcher(client)
	case "direct":
		fetch = board.DirectFetcher(&http.Client{Timeout: 3 * time.Second})
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return usageError{fmt.Sprintf("--addr %s: %v", o.addr, err)}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := board.New(client, ns, fleet.Options{MinEndpoints: o.minEndpoints})
	b.AllowHosts(o.allowHosts...)
	if fetch != nil {
		b.Plot(fetch, every)
	}
	if !o.readOnly {
		b.Offer(e.boardRun(o))
	}
	if err := b.Start(ctx); err != nil {
		ln.Close()
		return apiError{err}
	}
	fmt.Fprintf(e.stdout, "trackctl board: http://%s/ (%s); Ctrl-C stops it\n", ln.Addr(), namespaceWords(ns))
	if o.ready != nil {
		o.ready(ln.Addr().String())
	}
	return b.Serve(ctx, ln)
}

// boardRun runs a board button's trackctl command with the board's own
// kubeconfig and context: the same code as the command in a terminal.
func (e *env) boardRun(o *boardOptions) board.Run {
	return func(ctx context.Context, args []string) (string, error) {
		if o.kube.kubeconfig != "" {
			args = append(args, "--kubeconfig", o.kube.kubeconfig)
		}
		if o.kube.context != "" {
			args = append(args, "--context", o.kube.context)
		}
		var out strings.Builder
		run := &env{name: e.name, stdin: strings.NewReader(""), stdout: &out, stderr: &out, render: e.render, baseFile: e.baseFile, checker: e.checker}
		root := run.rootCommand()
		root.SetArgs(args)
		root.SetOut(&out)
		root.SetErr(&out)
		_, err := root.ExecuteContextC(ctx)
		if err != nil && err != errProblems {
			fmt.Fprintln(&out, err)
		}
		return out.String(), err
	}
}
