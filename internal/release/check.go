package release

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/trackrouter/trackrouter/weights"
)

// CheckValues refuses, before any edit, a value that is not a plain token:
// a version by the spec's rule, a weight a decimal number.
func CheckValues(edits []Edit) error {
	for _, e := range edits {
		field := e.Path[len(e.Path)-1]
		switch {
		case e.Path[0] == "tracks" && field == "version":
			// A value that breaks the spec's rule could carry YAML.
			if !weights.IsVersion(e.Value) {
				return fmt.Errorf("version %q: lowercase letters, digits, '.' and '-', starting and ending with a letter or digit, at most 63", e.Value)
			}
		case e.Path[0] == "backends":
			if _, err := strconv.Atoi(e.Value); err != nil {
				return fmt.Errorf("weight %q: want a decimal number", e.Value)
			}
		}
	}
	return nil
}

// OnlyAsked checks that the edited spec differs from the read one in the
// asked fields only, by their values as parsed: the edit cannot have
// changed anything else.
func OnlyAsked(before, after *weights.Spec, edits []Edit) error {
	asked := map[string]bool{}
	for _, e := range edits {
		asked[strings.Join(e.Path, ".")] = true
	}
	for _, c := range weights.SpecChanges(before, after) {
		if !asked[c.Field] {
			return fmt.Errorf("the edit changed %s too (%s): edit the file by hand", c.Field, c)
		}
	}
	for _, w := range weights.WeightChanges(before, after) {
		for _, sv := range w.Servers {
			if !asked["backends."+w.Backend+"."+sv.Track] {
				return fmt.Errorf("the edit changed backends.%s.%s too: edit the file by hand", w.Backend, sv.Track)
			}
		}
	}
	return nil
}
