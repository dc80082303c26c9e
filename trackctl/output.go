package trackctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/trackrouter/trackrouter/weights"
)

// The structured output of -o json and -o yaml. Field names are stable:
// tools may rely on them; new fields may be added. docs/health.md and docs/cli.md document them.

// Report is what validate and check print with -o json|yaml.
type Report struct {
	// OK is false when the command exits 1.
	OK      bool     `json:"ok"`
	Results []Result `json:"results"`
	// Skipped lists what check did not read as specs, and why.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Skipped is a file or directory check passed over.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Result is one spec, or one file that could not be read as specs.
type Result struct {
	File      string `json:"file"`
	Namespace string `json:"namespace,omitempty"`
	ConfigMap string `json:"configMap,omitempty"`
	Service   string `json:"service,omitempty"`
	// Status is ok, warnings (with --strict), invalid (the spec, or haproxy -c), differs (from the
	// golden file), missing-golden, stale-golden (a golden file no spec
	// renders), updated or deleted (check --update).
	Status   string    `json:"status"`
	Problems []Problem `json:"problems,omitempty"`
	Warnings []Problem `json:"warnings,omitempty"`
	Golden   string    `json:"golden,omitempty"`
	// Diff is the unified diff from the golden file to the rendered config.
	Diff     string    `json:"diff,omitempty"`
	Backends []Backend `json:"backends,omitempty"`
}

// Problem is one error or warning, where it is and what to fix.
type Problem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Backend is a backend's servers with their weights and shares.
type Backend struct {
	Name    string   `json:"name"`
	Servers []Server `json:"servers"`
}

// Server is one track in a backend.
type Server struct {
	Track  string  `json:"track"`
	Weight int     `json:"weight"`
	Share  float64 `json:"share"` // percent of the backend's requests
}

// DiffReport is what diff prints with -o json|yaml.
type DiffReport struct {
	Changed  bool          `json:"changed"`
	Services []ServiceDiff `json:"services"`
}

// ServiceDiff is how one service changes.
type ServiceDiff struct {
	Service string `json:"service"`
	// Status is same, changed, added or removed.
	Status  string                 `json:"status"`
	Spec    []weights.Change       `json:"spec,omitempty"`
	Weights []weights.WeightChange `json:"weights,omitempty"`
	// Config is the unified diff of haproxy.cfg.
	Config string `json:"config,omitempty"`
}

// RenderResult is what render prints with -o json|yaml.
type RenderResult struct {
	Service   string    `json:"service"`
	Namespace string    `json:"namespace"`
	Config    string    `json:"config"`
	Backends  []Backend `json:"backends"`
}

// problems turns a parse or check error into Problems.
func problems(err error) []Problem {
	var list weights.ErrorList
	if errors.As(err, &list) {
		return fieldProblems(list)
	}
	var out []Problem
	var fe *weights.FieldError
	if errors.As(err, &fe) {
		return fieldProblems(weights.ErrorList{fe})
	}
	return append(out, Problem{Message: err.Error()})
}

func fieldProblems(list weights.ErrorList) []Problem {
	out := make([]Problem, 0, len(list))
	for _, fe := range list {
		out = append(out, Problem{File: fe.File, Line: fe.Line, Field: fe.Field, Message: fe.Msg})
	}
	return out
}

// backends lists a spec's backends with their weights and shares.
func backends(s *weights.Spec) []Backend {
	var out []Backend
	for _, name := range s.BackendNames() {
		b := s.Backends[name]
		be := Backend{Name: name}
		for _, track := range b.Tracks() {
			be.Servers = append(be.Servers, Server{Track: track, Weight: b[track], Share: b.Share(track)})
		}
		out = append(out, be)
	}
	return out
}

// resultFor starts the Result of a spec.
func resultFor(s *weights.Spec) Result {
	r := Result{File: s.Source.File, Namespace: s.Source.Namespace, ConfigMap: s.Source.Name, Service: s.Service, Status: "ok"}
	if len(s.Warnings) > 0 {
		r.Warnings = fieldProblems(s.Warnings)
	}
	return r
}

// printStructured writes v as JSON or YAML.
func printStructured(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printWarnings writes a spec's warnings, one per line.
func printWarnings(w io.Writer, s *weights.Spec) {
	for _, fe := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", fe)
	}
}
