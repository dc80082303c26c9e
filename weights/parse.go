package weights

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/trackrouter/trackrouter/internal/suggest"
)

// MaxInputBytes bounds one spec (a service.yaml, a ConfigMap's value): the
// size limit of a ConfigMap.
const MaxInputBytes = 1 << 20

// MaxFileBytes bounds a file or stream of manifests that may hold many
// objects (kubectl kustomize's output, a bundle).
const MaxFileBytes = 16 << 20

// Parse reads every spec in a file: either a bare service.yaml, or Kubernetes
// manifests (several documents, or a List) where each ConfigMap with the key
// service.yaml holds one spec. Other manifests are skipped. Errors name the
// file, the line and the field; on any error no spec is returned.
func Parse(file string, data []byte) ([]*Spec, error) {
	if len(data) > MaxFileBytes {
		return nil, ErrorList{{File: file, Msg: fmt.Sprintf("input is more than the limit of %d bytes", MaxFileBytes)}}
	}
	docs, err := decodeDocuments(file, 0, data, MaxFileBytes)
	if err != nil {
		return nil, err
	}
	var (
		specs []*Spec
		errs  ErrorList
	)
	nonEmpty := 0
	for _, doc := range docs {
		if !(doc.Kind == yaml.ScalarNode && doc.Tag == "!!null") {
			nonEmpty++
		}
	}
	for _, doc := range docs {
		s, err := fromDocument(file, doc)
		errs = appendErr(errs, err)
		for _, spec := range s {
			if spec.Source.Name == "" && nonEmpty > 1 {
				// The sidecar reads a bare service.yaml as one document.
				errs = append(errs, &FieldError{File: file, Line: spec.Source.Line,
					Msg: fmt.Sprintf("a bare service.yaml holds exactly one YAML document, this file has %d (the sidecar refuses it): one file per service, or ConfigMaps with the key %s", nonEmpty, DataKey)})
			}
		}
		specs = append(specs, s...)
	}
	errs = append(errs, duplicates(file, specs)...)
	if len(errs) > 0 {
		return nil, errs
	}
	if len(specs) == 0 {
		return nil, &noSpecError{file}
	}
	return specs, nil
}

// duplicates finds two specs in one file that the cluster would not keep
// apart: the same ConfigMap twice, or the same service twice in a namespace
// (its Deployments and Services would collide).
func duplicates(file string, specs []*Spec) ErrorList {
	var errs ErrorList
	objects := make(map[string]int)
	services := make(map[string]int)
	for _, s := range specs {
		ns := s.Source.Namespace
		if ns == "" {
			ns = "default"
		}
		if s.Source.Name != "" {
			key := ns + "/" + s.Source.Name
			if line, dup := objects[key]; dup {
				errs = append(errs, &FieldError{File: file, Line: s.Source.Line,
					Msg: fmt.Sprintf("ConfigMap %s is defined twice (the other spec starts on line %d): the cluster keeps only the one applied last", key, line)})
				continue
			}
			objects[key] = s.Source.Line
		}
		key := ns + "/" + s.Service
		if line, dup := services[key]; dup {
			errs = append(errs, &FieldError{File: file, Line: s.Source.Line, Field: "service",
				Msg: fmt.Sprintf("service %s in namespace %s is also defined on line %d: their Deployments and Services would collide", s.Service, ns, line)})
			continue
		}
		services[key] = s.Source.Line
	}
	return errs
}

// noSpecError is a file that holds no spec at all.
type noSpecError struct{ file string }

func (e *noSpecError) Error() string {
	return e.file + ": no service spec found: want a service.yaml (with a service: field) or a ConfigMap with the key " + DataKey
}

// IsNoSpec reports whether err says that a file holds no spec, as opposed to
// holding a spec with errors.
func IsNoSpec(err error) bool {
	var e *noSpecError
	return errors.As(err, &e)
}

// ParseService reads one bare service.yaml, the content of the ConfigMap key.
// src says where it came from; its Line, when set, is the line of the
// content's first line in src.File, so errors point into that file.
func ParseService(src Source, data []byte) (*Spec, error) {
	offset := 0
	if src.Line > 0 {
		offset = src.Line - 1
	}
	all, err := decodeDocuments(src.File, offset, data, MaxInputBytes)
	if err != nil {
		return nil, err
	}
	// An empty document (a trailing "---") is nothing, as for Parse.
	var docs []*yaml.Node
	for _, d := range all {
		if !(d.Kind == yaml.ScalarNode && d.Tag == "!!null") {
			docs = append(docs, d)
		}
	}
	if len(docs) > 0 {
		if kind := lookup(docs[0], "kind"); kind != nil && lookup(docs[0], "apiVersion") != nil {
			return nil, ErrorList{{File: src.File, Line: kind.Line + offset, Field: "kind",
				Msg: fmt.Sprintf("a Kubernetes manifest (kind %s), not a service.yaml: give the sidecar the key's content (a mounted ConfigMap key) or --configmap NAMESPACE/NAME; trackctl reads manifests", clip(kind.Value))}}
		}
	}
	if len(docs) != 1 {
		return nil, ErrorList{{File: src.File, Line: src.Line, Msg: fmt.Sprintf("want exactly one YAML document, found %d", len(docs))}}
	}
	d := &decoder{file: src.File, offset: offset}
	s := d.spec(docs[0], src)
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// decodeDocuments splits data into YAML documents, refusing oversized input,
// anchors and aliases (so nothing can expand into an alias bomb).
func decodeDocuments(file string, offset int, data []byte, limit int) ([]*yaml.Node, error) {
	if len(data) > limit {
		return nil, ErrorList{{File: file, Msg: fmt.Sprintf("input is more than the limit of %d bytes", limit)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, ErrorList{yamlError(file, offset, err, data)}
		}
		if fe := refuseAliases(file, offset, &n); fe != nil {
			return nil, ErrorList{fe}
		}
		if errs := duplicateKeys(file, offset, &n, ""); len(errs) > 0 {
			return nil, errs
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			docs = append(docs, n.Content[0])
		}
	}
	return docs, nil
}

func refuseAliases(file string, offset int, n *yaml.Node) *FieldError {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return &FieldError{File: file, Line: n.Line + offset, Msg: "YAML anchors and aliases are not allowed; write the value out"}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!merge" {
		return &FieldError{File: file, Line: n.Line + offset, Msg: "YAML merge keys (<<) are not allowed; write the fields out"}
	}
	for _, c := range n.Content {
		if fe := refuseAliases(file, offset, c); fe != nil {
			return fe
		}
	}
	return nil
}

// duplicateKeys finds a key written twice in one mapping, anywhere in a
// document. Kubernetes and kubectl keep one of the copies without a word, so
// a ConfigMap with the key service.yaml twice would run another spec than
// the one a review read.
func duplicateKeys(file string, offset int, n *yaml.Node, path string) ErrorList {
	var errs ErrorList
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			errs = append(errs, duplicateKeys(file, offset, c, p)...)
		}
	case yaml.MappingNode:
		first := make(map[string]int)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := join(path, clip(k.Value))
			if k.Kind == yaml.ScalarNode {
				if line, dup := first[k.Value]; dup {
					errs = append(errs, &FieldError{File: file, Line: k.Line + offset, Field: p,
						Msg: fmt.Sprintf("duplicate key (first on line %d): Kubernetes would keep only one of them; remove one", line+offset)})
					continue
				}
				first[k.Value] = k.Line
			}
			errs = append(errs, duplicateKeys(file, offset, n.Content[i+1], p)...)
		}
	}
	return errs
}

// yamlError turns a syntax error into a FieldError. yaml.v3 reports
// "yaml: line N: msg"; the line is moved by offset.
func yamlError(file string, offset int, err error, data []byte) *FieldError {
	var line int
	var msg string
	if _, scanErr := fmt.Sscanf(err.Error(), "yaml: line %d:", &line); scanErr == nil {
		prefix := fmt.Sprintf("yaml: line %d: ", line)
		msg = clip(err.Error()[len(prefix):])
		lines := bytes.Split(data, []byte("\n"))
		// yaml.v3 names the line a mapping starts on, not the line it
		// could not read: find the first line that makes the text fail
		// as a whole does.
		if bad := firstFailingLine(lines, line, msg); bad > 0 {
			line = bad
		}
		// yaml.v3 does not always say when a tab is what it cannot read,
		// and names the line before it for a tab in the indentation.
		hasTab := func(n int) bool { return n >= 1 && n <= len(lines) && bytes.ContainsRune(lines[n-1], '\t') }
		switch {
		case hasTab(line):
		case strings.Contains(msg, "tab"):
			// yaml.v3 may name the line a block starts on (a ConfigMap's
			// literal block): the tab is on the first line after it
			// that has one.
			for n := line + 1; n <= len(lines); n++ {
				if hasTab(n) {
					line = n
					break
				}
			}
		}
		if hasTab(line) && !strings.Contains(msg, "tab character") {
			msg += " (a tab: YAML indents with spaces only)"
		} else if !hasTab(line) {
			msg += indentHint(lines, line, offset)
		}
		line += offset
	} else {
		msg = err.Error()
	}
	return &FieldError{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// firstFailingLine returns the first line (1-based) such that the text up
// to and including it fails with the message msg, or 0 when none does. The
// parser reads in order and stops at the first error, so a prefix holding
// the bad line fails as the whole text does and a shorter one does not (at
// the end of the text every open block is closed): a binary search over
// prefixes, a few parses even for a large file.
func firstFailingLine(lines [][]byte, from int, msg string) int {
	fails := func(n int) bool {
		dec := yaml.NewDecoder(bytes.NewReader(bytes.Join(lines[:n], []byte("\n"))))
		for {
			var node yaml.Node
			err := dec.Decode(&node)
			if err == nil {
				continue
			}
			if errors.Is(err, io.EOF) {
				return false
			}
			return strings.HasSuffix(err.Error(), ": "+msg)
		}
	}
	lo, hi := max(from, 1), len(lines)
	if lo > hi || !fails(hi) {
		return 0
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// indentHint says how a line's indentation differs from the keys it
// should line up with: of the blocks open above it (each earlier line
// indented less than all below it), the one whose indentation is nearest;
// "" when it lines up with one. offset turns a line of lines into a line
// of the file (a ConfigMap's literal block).
func indentHint(lines [][]byte, line, offset int) string {
	content := func(b []byte) bool {
		t := bytes.TrimSpace(b)
		return len(t) > 0 && t[0] != '#'
	}
	// keyIndent is where a line's key starts: after "- " for a list item.
	keyIndent := func(b []byte) int {
		t := bytes.TrimLeft(b, " ")
		n := len(b) - len(t)
		for bytes.HasPrefix(t, []byte("- ")) {
			t = bytes.TrimLeft(t[1:], " ")
			n = len(b) - len(t)
		}
		return n
	}
	if line < 1 || line > len(lines) || !content(lines[line-1]) {
		return ""
	}
	got := keyIndent(lines[line-1])
	type open struct{ indent, line int }
	var best, tie *open
	limit := -1
	for prev := line - 1; prev >= 1; prev-- {
		if !content(lines[prev-1]) {
			continue
		}
		ind := keyIndent(lines[prev-1])
		if limit >= 0 && ind >= limit {
			continue
		}
		limit = ind
		switch {
		case best == nil || abs(ind-got) < abs(best.indent-got):
			best, tie = &open{ind, prev}, nil
		case abs(ind-got) == abs(best.indent-got):
			tie = &open{ind, prev}
		}
		if ind == 0 {
			break
		}
	}
	if best == nil || best.indent == got {
		return ""
	}
	if tie != nil {
		// Half way between two levels: which one was meant, only the
		// author knows.
		return fmt.Sprintf(" (indented half way between the keys of line %d and those of line %d: line it up with one of them)",
			best.line+offset, tie.line+offset)
	}
	if got < best.indent {
		return fmt.Sprintf(" (indented %s less than the keys of line %d it should line up with)", spaces(best.indent-got), best.line+offset)
	}
	return fmt.Sprintf(" (indented %s more than the keys of line %d it should line up with)", spaces(got-best.indent), best.line+offset)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func spaces(n int) string {
	if n == 1 {
		return "1 space"
	}
	return fmt.Sprintf("%d spaces", n)
}

// fromDocument returns the specs in one document: a bare spec, a ConfigMap,
// or a List of objects.
func fromDocument(file string, doc *yaml.Node) ([]*Spec, error) {
	if doc.Kind != yaml.MappingNode {
		if doc.Kind == yaml.ScalarNode && doc.Tag == "!!null" {
			return nil, nil
		}
		return nil, ErrorList{{File: file, Line: doc.Line, Msg: "want a mapping (a service.yaml or a Kubernetes manifest)"}}
	}
	kind := lookup(doc, "kind")
	if kind == nil && lookup(doc, "apiVersion") == nil {
		if !looksLikeSpec(doc) {
			// Not a spec: a Helm values file, a CI workflow, a kustomization
			// without apiVersion. Skipped, as the cluster would.
			return nil, nil
		}
		d := &decoder{file: file}
		s := d.spec(doc, Source{File: file, Line: doc.Line})
		if err := d.errs.err(); err != nil {
			return nil, err
		}
		return []*Spec{s}, nil
	}
	switch {
	case kind != nil && kind.Value == "ConfigMap":
		s, err := fromConfigMap(file, doc)
		if s == nil {
			return nil, err
		}
		return []*Spec{s}, err
	case kind != nil && (kind.Value == "List" || kind.Value == "ConfigMapList"):
		items := lookup(doc, "items")
		if items == nil || items.Kind != yaml.SequenceNode {
			return nil, nil
		}
		var (
			specs []*Spec
			errs  ErrorList
		)
		for _, item := range items.Content {
			s, err := fromDocument(file, item)
			errs = appendErr(errs, err)
			specs = append(specs, s...)
		}
		return specs, errs.err()
	}
	return nil, nil
}

// fromConfigMap reads the spec held in a ConfigMap's data.service.yaml. Lines
// in errors are lines of the manifest file.
func fromConfigMap(file string, cm *yaml.Node) (*Spec, error) {
	src := Source{File: file}
	var label *yaml.Node
	if meta := lookup(cm, "metadata"); meta != nil {
		if n := lookup(meta, "name"); n != nil {
			src.Name = n.Value
			if !isSubdomain(n.Value, maxSubdomain) {
				return nil, ErrorList{{File: file, Line: n.Line, Field: "metadata.name", Msg: fmt.Sprintf("%q is not a ConfigMap name (a DNS-1123 subdomain)", clip(n.Value))}}
			}
		}
		if n := lookup(meta, "namespace"); n != nil {
			// The namespace goes into haproxy.cfg (the track Services'
			// names) and into golden file paths: a label, nothing else.
			src.Namespace = n.Value
			if !IsNamespace(n.Value) {
				return nil, ErrorList{{File: file, Line: n.Line, Field: "metadata.namespace", Msg: fmt.Sprintf("%q is not a namespace (a DNS-1123 label: lowercase letters, digits and '-', at most 63)", clip(n.Value))}}
			}
		}
		if labels := lookup(meta, "labels"); labels != nil {
			label = lookup(labels, ServiceLabel)
		}
	}
	data := lookup(cm, "data")
	var body *yaml.Node
	if data != nil {
		body = lookup(data, DataKey)
	}
	if body == nil {
		if label != nil {
			// Labelled for the controller, which would refuse it: say so
			// here rather than skip it.
			return nil, ErrorList{{File: file, Line: label.Line, Field: "data." + DataKey,
				Msg: fmt.Sprintf("this ConfigMap is labelled %s=%s but has no key %s (keys: %s)", ServiceLabel, label.Value, DataKey, keysOf(data))}}
		}
		return nil, nil
	}
	if body.Kind != yaml.ScalarNode {
		return nil, ErrorList{{File: file, Line: body.Line, Field: "data." + DataKey, Msg: "want the spec as a string (a literal block: service.yaml: |)"}}
	}
	if body.Style == yaml.FoldedStyle && strings.Contains(strings.TrimSpace(body.Value), ": ") && !strings.Contains(strings.TrimSpace(body.Value), "\n") {
		// ">" joins the spec's lines into one: YAML's own error would name
		// no line of the manifest.
		return nil, ErrorList{{File: file, Line: body.Line, Field: "data." + DataKey, Msg: "a folded block (>) joins the lines of the spec into one: write a literal block (service.yaml: |)"}}
	}
	// In a literal or folded block the content starts on the line after the
	// indicator; a quoted string starts on its own line.
	src.Line = body.Line
	if body.Style == yaml.LiteralStyle || body.Style == yaml.FoldedStyle {
		src.Line++
	}
	s, err := ParseService(src, []byte(body.Value))
	if err != nil {
		return nil, err
	}
	if label != nil && label.Value != s.Service {
		return nil, ErrorList{{File: file, Line: label.Line, Field: "metadata.labels." + ServiceLabel,
			Msg: fmt.Sprintf("label %q does not match service %q", label.Value, s.Service)}}
	}
	s.Source.Labelled = label != nil
	if label == nil {
		line := cm.Line
		if meta := lookup(cm, "metadata"); meta != nil {
			line = meta.Line
		}
		s.Warnings = append(s.Warnings, &FieldError{File: file, Line: line, Field: "metadata",
			Msg: fmt.Sprintf("no label %s: %s: track-controller ignores this ConfigMap (a sidecar given --configmap still reads it)", ServiceLabel, s.Service)})
	}
	return s, nil
}

// looksLikeSpec tells a bare spec from other YAML without apiVersion and
// kind: it has backends or tracks, or a service that is a name (a Helm
// values file has service: {type: ..., port: ...}).
func looksLikeSpec(doc *yaml.Node) bool {
	if lookup(doc, "backends") != nil || lookup(doc, "tracks") != nil {
		return true
	}
	s := lookup(doc, "service")
	return s != nil && s.Kind == yaml.ScalarNode
}

// keysOf lists a mapping's keys for a message.
func keysOf(m *yaml.Node) string {
	if m == nil || m.Kind != yaml.MappingNode || len(m.Content) == 0 {
		return "none"
	}
	var keys []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		keys = append(keys, clip(m.Content[i].Value))
	}
	return strings.Join(keys, ", ")
}

// lookup returns the value of key in a mapping node, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func appendErr(l ErrorList, err error) ErrorList {
	var el ErrorList
	if errors.As(err, &el) {
		return append(l, el...)
	}
	if err != nil {
		return append(l, &FieldError{Msg: err.Error()})
	}
	return l
}

// decoder walks a spec's YAML tree, building the Spec and collecting errors
// with their lines.
type decoder struct {
	file   string
	offset int
	errs   ErrorList
	lines  map[string]int
}

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{File: d.file, Line: n.Line + d.offset, Field: clip(field), Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) mark(field string, n *yaml.Node) { d.lines[field] = n.Line + d.offset }

type field struct {
	key   *yaml.Node
	value *yaml.Node
}

// fields returns the entries of a mapping, refusing duplicate and unknown keys.
// A null value is an empty mapping.
func (d *decoder) fields(n *yaml.Node, path string, known ...string) []field {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, found %s", describe(n))
		return nil
	}
	seen := make(map[string]bool)
	var out []field
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := join(path, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode:
			d.fail(k, path, "keys must be plain strings")
			continue
		case seen[k.Value]:
			d.fail(k, name, "duplicate key")
			continue
		case len(known) > 0 && !slices.Contains(known, k.Value):
			if near := suggest.Closest(k.Value, known); near != "" {
				d.fail(k, name, "unknown field (did you mean %s?; known: %s)", near, strings.Join(known, ", "))
			} else {
				d.fail(k, name, "unknown field (known: %s)", strings.Join(known, ", "))
			}
			continue
		}
		seen[k.Value] = true
		out = append(out, field{k, v})
	}
	return out
}

func (d *decoder) str(n *yaml.Node, path string) string {
	d.mark(path, n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.fail(n, path, "want a string, found %s", describe(n))
		return ""
	}
	return n.Value
}

// duration reads a Go duration ("30s", "10m", "1h30m").
func (d *decoder) duration(n *yaml.Node, path string) time.Duration {
	d.mark(path, n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.fail(n, path, "want a duration such as 30s or 10m, found %s", describe(n))
		return 0
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, "want a duration such as 30s or 10m, found %q", clip(n.Value))
		return 0
	}
	return v
}

// number reads an integer or a decimal number; rng says which ones the
// field takes, for the error.
func (d *decoder) number(n *yaml.Node, path, rng string) float64 {
	d.mark(path, n)
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.fail(n, path, "want a number (%s), found %s", rng, describe(n))
		return 0
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		d.fail(n, path, "want a number (%s), found %q", rng, clip(n.Value))
		return 0
	}
	return v
}

// int reads an integer; rng says which ones the field takes ("0-256"), for
// the error.
func (d *decoder) int(n *yaml.Node, path, rng string) int {
	d.mark(path, n)
	if n.Kind == yaml.ScalarNode && isDigits(n.Value) && n.Tag != "!!str" {
		// A run of digits too long for an int (YAML calls it a float).
		if _, err := strconv.Atoi(n.Value); err != nil {
			d.fail(n, path, "%q is out of range: want an integer %s", clip(n.Value), rng)
			return 0
		}
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.fail(n, path, "want an integer %s, found %s", rng, describe(n))
		return 0
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		d.fail(n, path, "want a decimal integer %s, found %q", rng, clip(n.Value))
		return 0
	}
	return v
}

// isDigits reports whether s is an optional sign and decimal digits.
func isDigits(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.Tag {
	case "!!null":
		return "nothing"
	case "!!str":
		return fmt.Sprintf("the string %q", clip(n.Value))
	}
	return fmt.Sprintf("%q", clip(n.Value))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
