package contract

import (
	"strings"
	"testing"
)

// TestSamplesVersions: a report without a version (a sidecar from before
// versions) is read as version 1; one newer than this build reads is
// refused, saying what to do; unknown fields are ignored.
func TestSamplesVersions(t *testing.T) {
	for body, want := range map[string]string{
		`{"worker":"7","servers":[{"backend":"free","server":"canary","requests":3}]}`: "",
		`{"version":1,"worker":"7","servers":[],"futureField":{"x":1}}`:                "",
		`{"version":2,"worker":"7","servers":[]}`:                                      "a samples report of version 2, newer than the 1 this build reads: upgrade track-controller",
		`<html>proxy error</html>`:                                                     "not a samples report",
	} {
		rep, err := DecodeSamples([]byte(body))
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", body, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want %q", body, err, want)
		case want == "" && rep.Worker != "7":
			t.Errorf("%s: worker %q", body, rep.Worker)
		}
	}
}
