// Command trackctl renders, validates, checks and diffs trackrouter service
// specs. Run "trackctl --help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/trackrouter/trackrouter/internal/trackctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Installed as kubectl-track, it is the kubectl plugin "kubectl track".
	name := "trackctl"
	if base := filepath.Base(os.Args[0]); strings.HasPrefix(base, "kubectl-") {
		name = "kubectl " + strings.TrimPrefix(base, "kubectl-")
	}
	code := trackctl.Main(ctx, name, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
