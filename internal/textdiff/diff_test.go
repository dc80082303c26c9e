package textdiff

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUnified(t *testing.T) {
	tests := []struct {
		name, a, b, want string
	}{
		{"equal", "x\ny\n", "x\ny\n", ""},
		{"change in the middle", "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\nFIVE\n6\n7\n8\n9\n",
			"--- a\n+++ b\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+FIVE\n 6\n 7\n 8\n"},
		{"added at the end", "1\n", "1\n2\n", "--- a\n+++ b\n@@ -1 +1,2 @@\n 1\n+2\n"},
		{"from empty", "", "1\n2\n", "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+1\n+2\n"},
		{"to empty", "1\n", "", "--- a\n+++ b\n@@ -1 +0,0 @@\n-1\n"},
		{"two hunks", "a\n1\n2\n3\n4\n5\n6\n7\n8\nb\n", "A\n1\n2\n3\n4\n5\n6\n7\n8\nB\n",
			"--- a\n+++ b\n@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n@@ -7,4 +7,4 @@\n 6\n 7\n 8\n-b\n+B\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Unified("a", "b", tc.a, tc.b)); diff != "" {
				t.Errorf("Unified (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLikeGNUDiff compares the hunks with GNU diff -u's on the same files.
func TestLikeGNUDiff(t *testing.T) {
	bin, err := exec.LookPath("diff")
	if err != nil {
		t.Fatalf("GNU diff not found (apt-get install diffutils): %v", err)
	}
	cases := [][2]string{
		{"", "a\nb\n"},
		{"a\nb\n", ""},
		{"a\n", "a\nb\n"},
		{"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\neleven\n12\n"},
		{"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n", "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n"},
		{"x\n", "y\n"},
	}
	dir := t.TempDir()
	for i, c := range cases {
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		os.WriteFile(a, []byte(c[0]), 0o644)
		os.WriteFile(b, []byte(c[1]), 0o644)
		out, _ := exec.Command(bin, "-u", a, b).Output()
		gnu := strings.SplitN(string(out), "\n", 3)[2] // without the two name lines
		ours := strings.SplitN(Unified("a", "b", c[0], c[1]), "\n", 3)[2]
		if diff := cmp.Diff(gnu, ours); diff != "" {
			t.Errorf("case %d (-GNU +ours):\n%s", i, diff)
		}
	}
}
