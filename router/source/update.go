// Package source reads the spec the sidecar routes by: a file (a mounted
// ConfigMap key, or a plain file) watched with fsnotify, or a ConfigMap
// watched through the API, and sends each version as an Update. The
// ConfigMap source also raises the Events of rejected specs.
package source

import (
	"time"

	"github.com/trackrouter/trackrouter/weights"
)

// Update is one version of the spec, as a source read it.
type Update struct {
	Data   []byte         // service.yaml content
	Source weights.Source // where it came from, for error messages
	Err    error          // the source could not read the spec (file missing, ConfigMap deleted)
	// Label is the ConfigMap's trackrouter.dev/service label, nil for a
	// file or a ConfigMap without it (the sidecar used without the
	// controller): a spec whose label names another service is one that
	// track-controller ignores, so the sidecar refuses it too.
	Label *string
	// Version is the ConfigMap's resourceVersion; "" for a file.
	Version string
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
