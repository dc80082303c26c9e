// Command trackctl renders, validates, checks and diffs trackrouter service
// specs. Run "trackctl --help" for the commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/trackrouter/trackrouter/trackctl"
)

func main() {
	// A signal cancels the command; one blocked in a read (a terminal, a
	// pipe that never ends) is ended 2 s later, or at a second signal.
	ctx, stop := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		stop()
		select {
		case <-sig:
		case <-time.After(2 * time.Second):
		}
		fmt.Fprintln(os.Stderr, "trackctl: interrupted")
		os.Exit(130)
	}()
	// Installed as kubectl-track, it is the kubectl plugin "kubectl track".
	name := "trackctl"
	if base := filepath.Base(os.Args[0]); strings.HasPrefix(base, "kubectl-") {
		name = "kubectl " + strings.TrimPrefix(base, "kubectl-")
	}
	code := trackctl.Main(ctx, name, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
