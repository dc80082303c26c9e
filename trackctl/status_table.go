package trackctl

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/weights"
)

// recentRelease is how long the table shows a release that ended.
const recentRelease = time.Hour

// tableWidth is what the table fits in.
const tableWidth = 120

// printTable writes one row per service, its problems below it; wide adds
// a block per service with tracks, backends and pods.
// A row longer than tableWidth is cut only when clip (the output is a
// terminal): piped, every cell is kept.
func printTable(w io.Writer, hs []*fleet.Health, allNamespaces, wide, clip bool) {
	cut := func(s string) string {
		if clip {
			return clipLine(s)
		}
		return strings.TrimRight(s, " ")
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	if allNamespaces {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "SERVICE\tHEALTH\tHAPROXY\tON SPEC\tTRACKS (version, ready endpoints)")
	for _, h := range hs {
		if allNamespaces {
			fmt.Fprintf(tw, "%s\t", h.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d/%d\t%s\n", h.Service, h.Word(), h.HAProxy.Ready, h.HAProxy.Desired,
			h.HAProxy.OnCurrentSpec, len(h.HAProxy.Pods), trackSummary(h))
	}
	tw.Flush()
	// Problems go under their row, so the table keeps its columns.
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	fmt.Fprintln(w, cut(lines[0]))
	for i, h := range hs {
		fmt.Fprintln(w, cut(lines[i+1]))
		if !wide {
			for _, p := range h.Problems {
				fmt.Fprint(w, wrap("  ! ", "    ", p))
			}
			if r := h.Release; r != nil && (r.Phase.InFlight() || time.Since(r.Since) < recentRelease) {
				fmt.Fprint(w, wrap("  > ", "    ", r.Words(time.Now())))
			}
		}
	}
	if wide {
		for _, h := range hs {
			fmt.Fprintln(w)
			printDetail(w, h)
		}
	}
}

// trackSummary is "internal 1.0.0 2, canary 1.0 4": each track's version
// in the spec and its ready endpoints.
func trackSummary(h *fleet.Health) string {
	if h.SpecError != "" {
		return "(invalid spec)"
	}
	parts := make([]string, len(h.Tracks))
	for i, t := range h.Tracks {
		parts[i] = fmt.Sprintf("%s %s %d", t.Name, t.Version, t.ReadyEndpoints)
	}
	return strings.Join(parts, ", ")
}

func clipLine(s string) string {
	s = strings.TrimRight(s, " ")
	if utf8.RuneCountInString(s) <= tableWidth {
		return s
	}
	r := []rune(s)
	return string(r[:tableWidth-1]) + "…"
}

// printDetail is the block of one service: tracks with the versions that
// run, backends with the spec's and the live weights, pods with their
// reports, and the problems.
func printDetail(w io.Writer, h *fleet.Health) {
	fmt.Fprintf(w, "%s/%s  %s  (ConfigMap %s, resourceVersion %s)\n", h.Namespace, h.Service, h.Word(), h.ConfigMap, h.ResourceVersion)
	if r := h.Release; r != nil {
		fmt.Fprint(w, wrap("  ", "    ", r.Words(time.Now())))
		if j := r.Judged; j != nil && r.Phase == pipeline.Baking {
			// The numbers of the last look at the bake: what the next
			// decision will be made on.
			fmt.Fprint(w, wrap(fmt.Sprintf("    last look (%s, %s): ", j.At.UTC().Format(time.RFC3339), j.Action), "      ", j.Reason))
		}
		fmt.Fprint(w, wrap("    last decision: ", "      ", r.Reason))
		for _, d := range r.Decisions[max(0, len(r.Decisions)-5):] {
			fmt.Fprint(w, wrap(fmt.Sprintf("    %s %s %s %s: ", d.At.UTC().Format(time.RFC3339), d.Kind, d.Version, d.Stage), "      ", d.Reason))
		}
	}
	fmt.Fprintf(w, "  HAProxy %s: %d/%d ready, %d/%d pods on the current spec\n", h.HAProxy.Deployment, h.HAProxy.Ready, h.HAProxy.Desired, h.HAProxy.OnCurrentSpec, len(h.HAProxy.Pods))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(h.Tracks) > 0 {
		fmt.Fprintln(tw, "  TRACK\tSPEC\tENDPOINTS\tRUNNING (version ready/replicas)")
		for _, t := range h.Tracks {
			replicas := "auto"
			if t.Replicas != nil {
				replicas = fmt.Sprint(*t.Replicas)
			}
			var running []string
			for _, d := range t.Deployments {
				leftover := ""
				for _, l := range h.Leftovers {
					if l.Name == d.Name {
						leftover = " (leftover)"
					}
				}
				running = append(running, fmt.Sprintf("%s %d/%d%s", d.Version, d.Ready, d.Replicas, leftover))
			}
			if len(running) == 0 {
				running = []string{"none"}
			}
			fmt.Fprintf(tw, "  %s\t%s x%s\t%d (min %d)\t%s\n", t.Name, t.Version, replicas, t.ReadyEndpoints, t.MinEndpoints, strings.Join(running, ", "))
		}
	}
	for _, d := range h.Leftovers {
		known := false
		for _, t := range h.Tracks {
			known = known || t.Name == d.Track
		}
		if !known { // a track the spec no longer has
			fmt.Fprintf(tw, "  %s\t(not in spec)\t\t%s %s %d/%d (leftover)\n", orDash(d.Track), d.Name, d.Version, d.Ready, d.Replicas)
		}
	}
	tw.Flush()
	if len(h.Backends) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  BACKEND\tTRACK\tSPEC WEIGHT\tLIVE ON HAPROXY PODS")
		for _, b := range h.Backends {
			for _, s := range b.Servers {
				live := fleet.LiveWords(s.Live)
				for _, why := range slices.Sorted(maps.Keys(s.Down)) {
					live += fmt.Sprintf("; %s on %d", strings.ToUpper(why), s.Down[why])
				}
				fmt.Fprintf(tw, "  %s\t%s\t%d (%s)\t%s\n", b.Name, s.Track, s.Weight, weights.Percent(s.Share), live)
			}
		}
		tw.Flush()
	}
	if len(h.HAProxy.Pods) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  POD\tREADY\tSPEC\tIN SYNC\tSINCE")
		for _, p := range h.HAProxy.Pods {
			spec, sync, since := "no report", "-", "-"
			if r := p.Report; r != nil {
				spec, since = "resourceVersion "+r.ResourceVersion, r.Since.Format(time.RFC3339)
				if p.Current {
					spec = "current"
				}
				if r.HAProxy != "running" {
					spec = "HAProxy " + r.HAProxy
				}
				sync = yesNo(r.InSync)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", p.Name, yesNo(p.Ready), spec, sync, since)
		}
		tw.Flush()
	}
	for _, p := range h.Problems {
		fmt.Fprint(w, wrap("  ! ", "    ", p))
	}
}

// wrap breaks text into lines of at most tableWidth, at spaces: the first
// after first, the others after cont.
func wrap(first, cont, text string) string {
	var b strings.Builder
	line := first
	for i, word := range strings.Fields(printable(text)) { // no terminal escape from a reason, a Job's message
		if i > 0 && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > tableWidth {
			b.WriteString(line + "\n")
			line = cont + word
			continue
		}
		if i > 0 {
			line += " "
		}
		line += word
	}
	b.WriteString(clipLine(line) + "\n")
	return b.String()
}

func pluralS(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
