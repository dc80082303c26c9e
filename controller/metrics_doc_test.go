package controller

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackrouter/trackrouter/router"
)

// TestMetricsReference: docs/metrics.md lists the metrics track-controller
// and the sidecar register, from their collectors' own descriptions (go
// test ./controller -run TestMetricsReference -update writes it): a metric
// added, renamed or reworded changes the page.
func TestMetricsReference(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var current atomic.Pointer[Controller]
	var leading atomic.Bool
	lease := &leaseState{}
	lease.recorder(Config{}, log)
	ctrl := metricCollectors(&current, &counters{}, &leading, NewAlerter(AlertConfig{}, log), newAPIRequests(), lease.errors)
	m := router.NewMetrics()
	side := []prometheus.Collector{router.SpecAge(func() time.Time { return time.Time{} })}
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		if c, ok := v.Field(i).Interface().(prometheus.Collector); ok {
			if _, isReg := c.(*prometheus.Registry); !isReg {
				side = append(side, c)
			}
		}
	}
	var b strings.Builder
	b.WriteString("# Metrics\n\nWhat track-controller (`--metrics-addr`, default `:9102`) and the trackrouter sidecar (`--metrics-addr`, port 9101 in the HAProxy tier) serve on `/metrics`, besides the Go runtime's and the process's (`go_*`, `process_*`); HAProxy's own exporter is on the tier's port 8404. Generated from the collectors' own descriptions: `go test ./controller -run TestMetricsReference -update`.\n")
	for _, part := range []struct {
		title string
		cs    []prometheus.Collector
	}{{"track-controller", ctrl}, {"trackrouter (the sidecar)", side}} {
		fmt.Fprintf(&b, "\n## %s\n\n| metric | labels | what it is |\n|---|---|---|\n", part.title)
		for _, d := range describe(part.cs) {
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", d.name, d.labels, strings.ReplaceAll(d.help, "|", "\\|"))
		}
	}
	const path = "../docs/metrics.md"
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != b.String() {
		t.Errorf("%s differs from the registered metrics (%v): go test ./controller -run TestMetricsReference -update", path, err)
	}
}

type metricDoc struct{ name, labels, help string }

// describe is the collectors' metrics, by name, Go's and the process's
// left out. A Desc says its name, help and labels only in its String.
func describe(cs []prometheus.Collector) []metricDoc {
	re := regexp.MustCompile(`fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)", constLabels: \{[^}]*\}, variableLabels: \{([^}]*)\}`)
	seen := map[string]metricDoc{}
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 100)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := re.FindStringSubmatch(d.String())
			if m == nil || strings.HasPrefix(m[1], "go_") || strings.HasPrefix(m[1], "process_") {
				continue
			}
			labels := ""
			if m[3] != "" {
				labels = "`" + strings.ReplaceAll(m[3], ",", "`, `") + "`"
			}
			seen[m[1]] = metricDoc{m[1], labels, strings.ReplaceAll(m[2], `\"`, `"`)}
		}
	}
	var out []metricDoc
	for _, d := range seen {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
