// Package version says which build a binary is, from the build info Go
// embeds: the module version and the VCS revision it was built from.
package version

import (
	"fmt"
	"runtime/debug"
)

// Version is the release's version, stamped by make dist
// (-ldflags "-X github.com/trackrouter/trackrouter/internal/version.Version=v0.2.0");
// empty, the module's version from the build info is said.
var Version string

// String is "<binary> <version> (<revision>[, modified], <go version>)".
func String(binary string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return binary + " (no build info)"
	}
	rev, modified := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		// Go stamps the revision when it builds in a git checkout with
		// git on PATH, unless told not to (GOFLAGS=-buildvcs=false, set
		// on some machines); make build asks for it.
		rev = "no revision stamped: built outside git or with -buildvcs=false; 'make build' stamps it"
	}
	if modified {
		rev += ", modified"
	}
	v := info.Main.Version
	if Version != "" {
		v = Version
	}
	return fmt.Sprintf("%s %s (%s, %s)", binary, v, rev, info.GoVersion)
}
