package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRevisionStamped: a binary built in the git checkout says which commit
// it is; one built without the VCS stamp says why it has none and how to
// get it, never "(unknown revision)" alone.
func TestRevisionStamped(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD (the tests run in a git checkout): %v", err)
	}
	unstamped := "no revision stamped: built outside git or with -buildvcs=false; 'make build' stamps it"
	stamped := strings.TrimSpace(string(head))[:12]
	// Go finds a checkout by its .git directory: in a git worktree (.git
	// is a file) it stamps nothing, and the binary must say so.
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
		stamped = unstamped
	}
	for _, tc := range []struct {
		vcs, want string
	}{
		{"-buildvcs=true", stamped},
		{"-buildvcs=false", unstamped},
	} {
		bin := filepath.Join(t.TempDir(), "show")
		if out, err := exec.Command("go", "build", tc.vcs, "-o", bin, "./testdata/show").CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", tc.vcs, err, out)
		}
		out, err := exec.Command(bin).Output()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("built with %s: got %q, %v; want it to say %q", tc.vcs, out, err, tc.want)
		}
	}
}
