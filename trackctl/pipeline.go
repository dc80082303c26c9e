package trackctl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/weights"
)

// pipelineCommands tell track-controller's pipeline what people decide:
// approve, pause, resume, abort. Each writes one key of the service's
// release ConfigMap (a merge patch: the pipeline's state is not touched);
// the controller acts at its next step, within a second.
func (e *env) pipelineCommands() []*cobra.Command {
	o := &releaseOptions{}
	var stage string
	approve := &cobra.Command{
		Use:   "approve SERVICE",
		Short: "Pass the approval gate the release waits at",
		Long: `Approve the build the service's release runs on its current stage: its
approval gate passes and the pipeline goes on. The approval names the version
and who gave it (the user the API server authenticates), so an approval never
passes another build. Refused when the release waits for no approval.`,
		Example: `  trackctl approve account-service -n shop --reason "QA signed off"`,
		Args:    exactArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.tellPipeline(cmd.Context(), o, args[0], "approve", func(spec *weights.Spec, st pipeline.State, user string) (string, string, error) {
				at := stage
				if at == "" {
					at = st.Stage
				}
				if !st.Phase.InFlight() || st.Stage != at {
					return "", "", fmt.Errorf("no release of %s is in flight on %s (%s)", spec.Service, at, releaseWords(st))
				}
				waits := false
				for i, g := range spec.Tracks[at].Gates {
					waits = waits || g.Approval && i >= st.Gate && st.Phase == pipeline.Gates
				}
				if !waits {
					return "", "", fmt.Errorf("release %s on %s waits for no approval (%s)", st.Version, at, releaseWords(st))
				}
				return pipeline.KeyApproved + at, fmt.Sprintf("%s by %s at %s%s", st.Version, user, now(), because(o.reason)), nil
			})
		},
	}
	approve.Flags().StringVar(&stage, "stage", "", "the stage to approve (default: the one the release is on)")
	pause := &cobra.Command{
		Use:   "pause SERVICE",
		Short: "Hold the release where it is: no gate, promotion or rollback until resume",
		Long: `Pause the service's pipeline: the release stays on its stage, the bake's clock
goes on, and nothing is promoted or rolled back until trackctl resume; a build
deployed meanwhile waits too (at resume it supersedes the release). An abort
still works while paused.`,
		Example: `  trackctl pause account-service -n shop --reason "incident 42"`,
		Args:    exactArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.tellPipeline(cmd.Context(), o, args[0], "pause", func(spec *weights.Spec, st pipeline.State, user string) (string, string, error) {
				return pipeline.KeyPaused, fmt.Sprintf("by %s at %s%s", user, now(), because(o.reason)), nil
			})
		},
	}
	resume := &cobra.Command{
		Use:   "resume SERVICE",
		Short: "Let a paused release go on",
		Long: `Resume the service's paused pipeline: what waited (a gate, a verdict, a build
deployed meanwhile) is acted on at its next step, within a second.`,
		Example: `  trackctl resume account-service -n shop`,
		Args:    exactArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.tellPipeline(cmd.Context(), o, args[0], "resume", func(spec *weights.Spec, st pipeline.State, user string) (string, string, error) {
				return pipeline.KeyPaused, "", nil
			})
		},
	}
	abort := &cobra.Command{
		Use:   "abort SERVICE",
		Short: "Roll the release back on its stage now, as a breach would",
		Long: `Abort the service's release: its stage's weights go to 0 and its version back
to the one it ran before (on the first stage, the version only), recorded with
who aborted and why, and alerted.`,
		Example: `  trackctl abort account-service -n shop --reason "wrong build"`,
		Args:    exactArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.tellPipeline(cmd.Context(), o, args[0], "abort", func(spec *weights.Spec, st pipeline.State, user string) (string, string, error) {
				if !st.Phase.InFlight() {
					return "", "", fmt.Errorf("no release of %s is in flight (%s)", spec.Service, releaseWords(st))
				}
				return pipeline.KeyAbort, fmt.Sprintf("%s by %s at %s%s", st.Version, user, now(), because(o.reason)), nil
			})
		},
	}
	fo := &releaseOptions{}
	follow := &cobra.Command{
		Use:   "follow SERVICE -f MANIFEST",
		Short: "GitOps: make the pipeline's pending decision in the manifest in git",
		Long: `For a spec kept in git (its ConfigMap annotated trackrouter.dev/pipeline: gitops),
track-controller never edits the spec: it records each decision's edits as
pending in the service's release ConfigMap, and the release moves on once the
spec synced from git holds them. follow reads the pending decision from the
cluster (-n, --kubeconfig, --context) and makes its edits in MANIFEST, as
promote and rollback -f do (the changed values' bytes only, validated first),
then prints the git command that commits it with the decision as the reason.
Nothing pending: says so and changes nothing. Run it in CI on a schedule, or
when the ReleasePending Event or alert comes.`,
		Example: `  trackctl follow account-service -n shop -f manifests/account-service.yaml`,
		Args:    exactArgs(1, "SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.follow(cmd.Context(), fo, args[0])
		},
	}
	ffs := follow.Flags()
	fo.kube.add(ffs)
	ffs.Lookup("all-namespaces").Hidden = true
	ffs.StringVarP(&fo.file, "filename", "f", "", "the manifest (or bare service.yaml) in git to edit in place")
	ffs.BoolVar(&fo.dryRun, "dry-run", false, "print the change and write nothing")
	ffs.StringVarP(&fo.output, "output", "o", "text", "output format: text, json, yaml")
	cmds := []*cobra.Command{approve, pause, resume, abort}
	for _, c := range cmds {
		fs := c.Flags()
		o.kube.add(fs)
		fs.Lookup("all-namespaces").Hidden = true
		fs.StringVar(&o.reason, "reason", "", "why, recorded with the decision")
	}
	return append(cmds, follow)
}

// follow makes the release's pending decision in the manifest o.file.
func (e *env) follow(ctx context.Context, o *releaseOptions, service string) error {
	if o.file == "" {
		return usageError{"-f MANIFEST is required: the manifest in git that holds the spec"}
	}
	switch o.output {
	case "text", "json", "yaml":
	default:
		return usageError{fmt.Sprintf("-o %q: want one of text, json, yaml", o.output)}
	}
	if o.file != "-" {
		if _, err := os.Stat(o.file); err != nil {
			return fmt.Errorf("-f %s: %w (nothing read from the cluster)", o.file, err)
		}
	}
	client, ns, err := o.kube.client(nil)
	if err != nil {
		return err
	}
	if ns == "" {
		ns = "default"
	}
	name := pipeline.ConfigMapName(service)
	rel, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s has no release ConfigMap %s/%s: no pipeline has run for it (is track-controller running, and does a stage have gates or an analysis?)", service, ns, name)
	}
	if err != nil {
		return apiError{fmt.Errorf("read ConfigMap %s/%s: %w", ns, name, err)}
	}
	st, _, err := pipeline.Read(rel.Data)
	if err != nil {
		return fmt.Errorf("ConfigMap %s/%s: %w", ns, name, err)
	}
	if st.Pending == nil {
		fmt.Fprintf(e.stdout, "%s: nothing pending (%s)\n", service, releaseWords(st))
		return nil
	}
	edits, err := pipeline.ParseEdits(st.Pending.Edits)
	if err != nil {
		return err
	}
	// -n is the cluster's namespace; a manifest in git often has none (a
	// kustomization sets it): the file's only spec of the service is it.
	file := &releaseOptions{file: o.file, dryRun: o.dryRun, output: o.output, reason: oneLine(st.Pending.Reason)}
	return e.runChange(ctx, file, service, fmt.Sprintf("follow %s %s (%s)", st.Pending.Kind, st.Pending.Version, st.Pending.Stage),
		func(*weights.Spec) ([]edit, error) { return edits, nil })
}

func now() string { return time.Now().UTC().Truncate(time.Second).Format(time.RFC3339) }

func because(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func releaseWords(st pipeline.State) string {
	if st.Phase == "" || st.Phase == pipeline.Idle {
		return "no release yet"
	}
	return fmt.Sprintf("release %s is %s on %s", st.Version, st.Phase, st.Stage)
}

// tellPipeline reads the service's spec and release, asks decide for the
// key to write (and its value; "" removes it), and merge-patches it into
// the release ConfigMap.
func (e *env) tellPipeline(ctx context.Context, o *releaseOptions, service, command string,
	decide func(spec *weights.Spec, st pipeline.State, user string) (key, value string, err error)) error {
	o.reason = strings.TrimSpace(o.reason)
	if strings.IndexFunc(o.reason, unicode.IsControl) >= 0 {
		return usageError{"--reason: control characters (newlines, tabs, escapes) are not allowed: one line of text"}
	}
	if strings.ContainsAny(o.reason, "<>") {
		return usageError{"--reason: < and > are not allowed (they make Slack mentions such as <!channel>): one line of text"}
	}
	client, cm, err := e.specConfigMap(ctx, o, service)
	if err != nil {
		return err
	}
	spec, err := weights.ParseService(weights.ConfigMapSource(cm.Namespace, cm.Name), []byte(cm.Data[weights.DataKey]))
	if err != nil {
		return fmt.Errorf("the spec in ConfigMap %s/%s is invalid: %w", cm.Namespace, cm.Name, err)
	}
	if !pipeline.Uses(spec) {
		return fmt.Errorf("%s has no pipeline: no stage of its spec has gates or an analysis", service)
	}
	name := pipeline.ConfigMapName(service)
	rel, err := client.CoreV1().ConfigMaps(cm.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s has no release ConfigMap %s/%s yet: is track-controller running?", service, cm.Namespace, name)
	}
	if err != nil {
		return apiError{fmt.Errorf("read ConfigMap %s/%s: %w", cm.Namespace, name, err)}
	}
	st, _, err := pipeline.Read(rel.Data)
	if err != nil {
		return fmt.Errorf("ConfigMap %s/%s: %w", cm.Namespace, name, err)
	}
	key, value, err := decide(spec, st, whoAmI(ctx, client))
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v; nothing changed\n", service, err)
		return errProblems
	}
	var v any = value
	if value == "" {
		v = nil // a merge patch's null removes the key
	}
	patch, _ := json.Marshal(map[string]any{"data": map[string]any{key: v}})
	if _, err := client.CoreV1().ConfigMaps(cm.Namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "trackctl"}); err != nil {
		return apiError{fmt.Errorf("patch ConfigMap %s/%s: %w (nothing changed)", cm.Namespace, name, err)}
	}
	switch {
	case value == "":
		fmt.Fprintf(e.stdout, "%s: %s: %s removed from %s/%s; the pipeline acts within a second\n", service, command, key, cm.Namespace, name)
	default:
		fmt.Fprintf(e.stdout, "%s: %s: %s=%q in %s/%s; the pipeline acts within a second\n", service, command, key, value, cm.Namespace, name)
	}
	return nil
}
