package testnode

import (
	"strings"
	"testing"
)

// TestPreflightNamesWhatIsMissing: on a machine without the node's
// programs (here: an empty PATH) the error names each one and the Debian
// package that brings it, never a hang or a bare "not found".
func TestPreflightNamesWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", "")
	err := Preflight()
	if err == nil {
		t.Fatal("Preflight passed with an empty PATH")
	}
	for _, want := range []string{"this machine cannot run a node", "containerd (apt-get install -y containerd)",
		"runc (apt-get install -y runc)", "iptables (apt-get install -y iptables)", "conntrack (apt-get install -y conntrack)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
}
