package weights

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocumentedFields: the field table of the documentation
// (docs/spec.md) and the decoder know the same fields. A field has its own
// row, or is named (in backquotes) in its parent's row; a row names a
// field the decoder knows.
func TestDocumentedFields(t *testing.T) {
	b, err := os.ReadFile("../docs/spec.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	// A row's first cell names a field, or several of one parent:
	// "`affinity.cookie`, `.maxAge`, `.secure`".
	for _, m := range regexp.MustCompile("(?m)^\\| (`[^|]+`) \\|(.*)$").FindAllStringSubmatch(string(b), -1) {
		var parent string
		for _, name := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(m[1], -1) {
			p := name[1]
			if strings.HasPrefix(p, ".") {
				p = parent + p
			} else if i := strings.LastIndex(p, "."); i >= 0 {
				parent = p[:i]
			}
			rows[p] = m[2]
		}
	}
	known := map[string]bool{}
	for _, p := range FieldPaths() {
		known[p] = true
		if _, ok := rows[p]; ok {
			continue
		}
		i := strings.LastIndex(p, ".")
		if i < 0 || !strings.Contains(rows[p[:i]], "`"+p[i+1:]+"`") {
			t.Errorf("field %s is not in the documentation's table (docs/spec.md): give it a row, or name it in %s's", p, p[:max(i, 0)])
		}
	}
	for p := range rows {
		if !known[p] {
			t.Errorf("docs/spec.md documents %s, which the spec has no field for", p)
		}
	}
}
