package release

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/trackrouter/trackrouter/weights"
)

// An Edit sets one scalar of a spec to a new value, by its path
// (tracks.canary.version, backends.canary.production). Edits change the
// bytes of that value only: comments, key order, flow or block style,
// quotes and indentation stay, so a pull request's diff is the changed
// values and nothing else.
type Edit struct {
	Path  []string
	Value string
}

func (e Edit) String() string { return strings.Join(e.Path, ".") + "=" + e.Value }

// EditText applies edits to a spec's text as it sits in file: line 1 of
// spec is line lineOffset+1 of file, indented by indent more columns (a
// ConfigMap's literal block), or file itself (a bare spec, 0 and 0). Each
// edit replaces the bytes of one value, in the file and in spec, so that
// the next edit reads its position from the edited text.
func EditText(file, spec []byte, lineOffset, indent int, edits []Edit) ([]byte, error) {
	for _, e := range edits {
		var doc yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(spec))
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("read the spec: %w", err)
		}
		for {
			// An empty document (a trailing ---) is nothing, as for the parser.
			var extra yaml.Node
			err := dec.Decode(&extra)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil || len(extra.Content) > 0 && !(extra.Content[0].Kind == yaml.ScalarNode && extra.Content[0].Tag == "!!null") {
				return nil, errors.New("the spec holds several YAML documents")
			}
		}
		if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
			return nil, errors.New("the spec is empty")
		}
		name := strings.Join(e.Path, ".")
		n := find(doc.Content[0], e.Path)
		if n == nil {
			return nil, fmt.Errorf("the spec has no %s", name)
		}
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s is not a single value", name)
		}
		old, value := n.Value, e.Value
		switch n.Style {
		case 0: // plain
			if e.Path[len(e.Path)-1] == "version" && needsQuotes(value) {
				// 1.10, 010, null: other YAML readers would see a number
				// or nothing where the spec means a string.
				value = `"` + value + `"`
			}
		case yaml.DoubleQuotedStyle:
			old, value = `"`+old+`"`, `"`+value+`"`
		case yaml.SingleQuotedStyle:
			old, value = "'"+old+"'", "'"+value+"'"
		default:
			return nil, fmt.Errorf("%s: cannot edit a value written as a block", name)
		}
		var err error
		if file, err = replaceAt(file, lineOffset+n.Line-1, indent+n.Column-1, old, value); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if spec, err = replaceAt(spec, n.Line-1, n.Column-1, old, value); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return file, nil
}

// replaceAt replaces old, which must be at line and col (0-based, bytes),
// with new.
func replaceAt(text []byte, line, col int, old, new string) ([]byte, error) {
	lines := bytes.SplitAfter(text, []byte("\n"))
	if line < 0 || line >= len(lines) {
		return nil, fmt.Errorf("line %d is outside the text", line+1)
	}
	l := lines[line]
	if col < 0 || col+len(old) > len(l) || string(l[col:col+len(old)]) != old {
		return nil, fmt.Errorf("the value is not where the YAML parser says (line %d): edit it by hand", line+1)
	}
	lines[line] = append(append(append([]byte{}, l[:col]...), new...), l[col+len(old):]...)
	return bytes.Join(lines, nil), nil
}

// find walks a mapping tree by keys.
func find(n *yaml.Node, path []string) *yaml.Node {
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

// SpecText returns the text of s as written in file, with where it sits:
// the whole file for a bare spec; for a ConfigMap, the content of its
// literal block, the line before it and its indentation.
func SpecText(file []byte, s *weights.Spec) (text []byte, lineOffset, indent int, err error) {
	if s.Source.Name == "" {
		return file, 0, 0, nil
	}
	lines := bytes.SplitAfter(file, []byte("\n"))
	start := s.Source.Line - 1 // 0-based first content line
	if start < 1 || start > len(lines) {
		return nil, 0, 0, fmt.Errorf("ConfigMap %s/%s: cannot find its %s", s.Source.Namespace, s.Source.Name, weights.DataKey)
	}
	header := strings.TrimSpace(string(lines[start-1]))
	if !strings.HasSuffix(header, "|") && !strings.Contains(header, "|-") && !strings.Contains(header, "|+") {
		return nil, 0, 0, fmt.Errorf("ConfigMap %s/%s: %s is not a literal block (%s: |): edit it by hand", s.Source.Namespace, s.Source.Name, weights.DataKey, weights.DataKey)
	}
	indent = -1
	var b bytes.Buffer
	for _, l := range lines[start:] {
		trimmed := bytes.TrimLeft(l, " ")
		blank := len(bytes.TrimSpace(l)) == 0
		if indent < 0 && !blank {
			indent = len(l) - len(trimmed)
		}
		if !blank && len(l)-len(trimmed) < indent {
			break // the block ended
		}
		if blank {
			b.WriteString("\n")
			continue
		}
		b.Write(l[indent:])
	}
	return b.Bytes(), start, indent, nil
}

// yaml11Number is what YAML 1.1 readers (PyYAML) take for a number: 1.10
// is 1.1 to them, 010 is 8.
var yaml11Number = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(\.[0-9_]*)?$`)

// needsQuotes reports whether a plain scalar would not read as the string
// it is, to YAML 1.2 or 1.1 readers.
func needsQuotes(v string) bool {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(v), &n); err != nil || len(n.Content) != 1 || n.Content[0].Tag != "!!str" {
		return true
	}
	switch strings.ToLower(v) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~":
		return true
	}
	return yaml11Number.MatchString(v)
}
