package trackctl

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// TestCLIReference: docs/cli-reference.md is what cobra's own doc
// generator makes of trackctl's commands, so that the reference cannot
// drift from --help (go test ./trackctl -run TestCLIReference -update
// writes it).
func TestCLIReference(t *testing.T) {
	e := &env{name: "trackctl", stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	root := e.rootCommand()
	root.DisableAutoGenTag = true
	var b bytes.Buffer
	b.WriteString("# trackctl reference\n\nGenerated from the commands' own help (`go test ./trackctl -run TestCLIReference -update`); `trackctl COMMAND --help` says the same.\n\n")
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" && c.Parent() != nil && c.Parent().Name() == "completion" {
			return
		}
		c.DisableAutoGenTag = true
		var page bytes.Buffer
		if err := doc.GenMarkdownCustom(c, &page, func(name string) string {
			// Links between commands: anchors on this one page.
			return "#" + strings.ReplaceAll(strings.TrimSuffix(name, ".md"), "_", "-")
		}); err != nil {
			t.Fatal(err)
		}
		// One page: each command's heading one level down, and the
		// "SEE ALSO" lists (a page per command's) left out.
		text := page.String()
		if i := strings.Index(text, "### SEE ALSO"); i >= 0 {
			text = text[:i]
		}
		text = strings.Replace(text, "## "+c.CommandPath(), "## "+c.CommandPath()+" {#"+strings.ReplaceAll(c.CommandPath(), " ", "-")+"}", 1)
		text = strings.ReplaceAll(text, "\n### ", "\n#### ")
		b.WriteString(strings.TrimSpace(text) + "\n\n")
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				walk(sub)
			}
		}
	}
	walk(root)
	const path = "../docs/cli-reference.md"
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, b.Bytes()) {
		t.Errorf("%s differs from the commands' help (%v): go test ./trackctl -run TestCLIReference -update", path, err)
	}
}
