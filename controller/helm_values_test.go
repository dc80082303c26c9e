package controller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

// TestHelmValuesReference: docs/helm-values.md is the chart's values as
// values.yaml (its defaults and the comment above each) and
// values.schema.json (types and allowed values) say them, so that the
// table cannot drift from the chart (go test ./controller -run
// TestHelmValuesReference -update writes it).
func TestHelmValuesReference(t *testing.T) {
	raw, err := os.ReadFile(chart + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	sb, err := os.ReadFile(chart + "/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(sb, &schema); err != nil {
		t.Fatal(err)
	}
	type row struct{ path, kind, def, about string }
	var rows []row
	var walk func(n *yamlv3.Node, path string, sch map[string]any, inherited string)
	walk = func(n *yamlv3.Node, path string, sch map[string]any, inherited string) {
		props, _ := sch["properties"].(map[string]any)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := strings.TrimPrefix(path+"."+k.Value, ".")
			about := oneLine(k.HeadComment)
			if about == "" {
				about = inherited
			}
			sub, _ := props[k.Value].(map[string]any)
			if v.Kind == yamlv3.MappingNode && len(v.Content) > 0 {
				walk(v, p, sub, about)
				continue
			}
			if d, _ := sub["description"].(string); d != "" && oneLine(k.HeadComment) == "" {
				about = d
			}
			var def bytes.Buffer
			enc := yamlv3.NewEncoder(&def)
			enc.SetIndent(2)
			v.HeadComment, v.LineComment, v.FootComment = "", "", ""
			enc.Encode(v)
			rows = append(rows, row{p, kindOf(sub), strings.TrimSpace(def.String()), about})
		}
	}
	walk(doc.Content[0], "", schema, "")
	for name := range schema["properties"].(map[string]any) {
		if name == "global" {
			continue // Helm's own, for subcharts
		}
		found := false
		for _, r := range rows {
			found = found || r.path == name || strings.HasPrefix(r.path, name+".")
		}
		if !found {
			t.Errorf("values.schema.json has %s, which values.yaml does not set: give it a default there", name)
		}
	}
	var b strings.Builder
	b.WriteString("# Helm values\n\nThe chart `examples/helm/track-controller`'s values, from its `values.yaml` (defaults, and the comment above each) and `values.schema.json` (types; a value outside them is refused before anything reaches the cluster). Generated: `go test ./controller -run TestHelmValuesReference -update`.\n\n")
	b.WriteString("| value | type | default | what it does |\n|---|---|---|---|\n")
	for _, r := range rows {
		def := strings.ReplaceAll(r.def, "\n", " ")
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", r.path, r.kind, strings.ReplaceAll(def, "|", "\\|"), strings.ReplaceAll(r.about, "|", "\\|"))
	}
	const path = "../docs/helm-values.md"
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != b.String() {
		t.Errorf("%s differs from the chart's values (%v): go test ./controller -run TestHelmValuesReference -update", path, err)
	}
}

// oneLine is a YAML comment as one line of text.
func oneLine(comment string) string {
	var words []string
	for _, l := range strings.Split(comment, "\n") {
		words = append(words, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#")))
	}
	return strings.TrimSpace(strings.Join(words, " "))
}

// kindOf is a schema's type, with its allowed values.
func kindOf(s map[string]any) string {
	if s == nil {
		return ""
	}
	k := fmt.Sprint(s["type"])
	if s["type"] == nil {
		k = ""
	}
	if e, ok := s["enum"].([]any); ok {
		var vs []string
		for _, v := range e {
			vs = append(vs, strings.ReplaceAll(fmt.Sprintf("%q", v), `"`, ""))
			if v == "" {
				vs[len(vs)-1] = `""`
			}
		}
		k += " (" + strings.Join(vs, ", ") + ")"
	}
	if m, ok := s["minimum"]; ok {
		k += fmt.Sprintf(", at least %v", m)
	}
	return strings.TrimSpace(k)
}
