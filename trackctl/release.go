package trackctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/spf13/cobra"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/internal/fsutil"
	"github.com/trackrouter/trackrouter/internal/release"
	"github.com/trackrouter/trackrouter/weights"
)

// AnnotationHistory holds, on a spec ConfigMap, the changes made to it
// (see release.AnnotationHistory).
const AnnotationHistory = release.AnnotationHistory

// HistoryEntry is one change, as recorded on the ConfigMap and printed by
// trackctl history -o json.
type HistoryEntry = release.HistoryEntry

// The release commands' decisions live in internal/release, shared with
// track-controller's pipeline.
type (
	edit    = release.Edit
	planner = release.Planner
)

var (
	planDeploy    = release.Deploy
	planPromote   = release.Promote
	planSetWeight = release.SetWeight
	planRollback  = release.Rollback
	editText      = release.EditText
	specText      = release.SpecText
	readHistory   = release.ReadHistory
)

// weightArgs reads set-weight's TRACK=WEIGHT arguments, in their order.
func weightArgs(args []string) (order []string, weightOf map[string]string, err error) {
	weightOf = map[string]string{}
	for _, a := range args {
		track, w, ok := strings.Cut(a, "=")
		n, err := strconv.Atoi(w)
		if !ok || track == "" || err != nil {
			return nil, nil, usageError{fmt.Sprintf("%q: want TRACK=WEIGHT, e.g. canary=10", a)}
		}
		if _, dup := weightOf[track]; dup {
			return nil, nil, usageError{fmt.Sprintf("track %s is given twice", track)}
		}
		weightOf[track] = strconv.Itoa(n) // 010 and +5 are written 10 and 5
		order = append(order, track)
	}
	return order, weightOf, nil
}

// releaseOptions are the flags every release command shares.
type releaseOptions struct {
	kube   kubeFlags
	file   string
	dryRun bool
	reason string
	output string
	to     string // promote --to
	// version is rollback --version.
	version string
	// client replaces the kubeconfig (tests).
	client kubernetes.Interface
}

func (o *releaseOptions) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	o.kube.add(fs)
	fs.Lookup("all-namespaces").Hidden = true
	fs.StringVarP(&o.file, "filename", "f", "", "edit this manifest or bare service.yaml in place instead of the cluster")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the change (spec, weights with shares, haproxy.cfg) and write nothing")
	fs.StringVar(&o.reason, "reason", "", "why, recorded in the history (cluster) or for the commit message (file)")
	fs.StringVarP(&o.output, "output", "o", "text", "output format: text, json, yaml")
}

func (e *env) releaseCommands() []*cobra.Command {
	o := &releaseOptions{}
	deploy := &cobra.Command{
		Use:   "deploy SERVICE VERSION",
		Short: "Put a new build on the first stage (the first track the spec lists)",
		Long: `Set the version of the service's first stage to VERSION. The stage order is the
order in which the spec lists its tracks (internal, canary, paid, production in
the example): deploy puts a build on the first, promote moves it along.

In the cluster (-n, --kubeconfig, --context) the spec ConfigMap is updated only
if nobody changed it since it was read, the change is recorded (who, when, what,
why) in its trackrouter.dev/history annotation and a Normal Event; with
-f FILE the manifest is edited in place, changing the value's bytes only. The
change is validated as validate does first; an invalid one writes nothing.`,
		Example: `  trackctl deploy account-service 1.1.0 -n shop --reason "build 4711"
  trackctl deploy account-service 1.1.0 -f manifests/account-service.yaml --dry-run`,
		Args: exactArgs(2, "SERVICE and VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.runChange(cmd.Context(), o, args[0], "deploy "+args[1], planDeploy(args[1]))
		},
	}
	promote := &cobra.Command{
		Use:   "promote SERVICE VERSION [--to TRACK]",
		Short: "Move a version to the next stage (or to --to TRACK)",
		Long: `Set the version of the stage after the last one that runs VERSION (in the
order the spec lists its tracks) to VERSION; --to names the track instead.
Targets, validation and history as for deploy.`,
		Example: `  trackctl promote account-service 1.1.0 -n shop
  trackctl promote account-service 1.1.0 --to production -f manifests/account-service.yaml`,
		Args: exactArgs(2, "SERVICE and VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			version := args[1]
			label := "promote " + version
			if o.to != "" {
				label += " --to " + o.to
			}
			return e.runChange(cmd.Context(), o, args[0], label, planPromote(version, o.to))
		},
	}
	promote.Flags().StringVar(&o.to, "to", "", "the track to promote to (default: the next stage)")
	setWeight := &cobra.Command{
		Use:   "set-weight SERVICE BACKEND TRACK=WEIGHT...",
		Short: "Set the weights of tracks in a backend",
		Long: `Set the relative weight (0-256) of each TRACK in BACKEND. Weights are relative:
the output shows the share of the backend's requests each gets. Only tracks
already in the backend can be set. Targets, validation and history as for
deploy.`,
		Example: `  trackctl set-weight account-service canary canary=10 production=90 -n shop --reason "canary looks good"
  trackctl set-weight account-service canary canary=0 -f manifests/account-service.yaml --dry-run`,
		Args: minArgs(3, "SERVICE, BACKEND and at least one TRACK=WEIGHT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			order, weightOf, err := weightArgs(args[2:])
			if err != nil {
				return err
			}
			return e.runChange(cmd.Context(), o, args[0], "set-weight "+strings.Join(args[1:], " "), planSetWeight(args[1], order, weightOf))
		},
	}
	rollback := &cobra.Command{
		Use:   "rollback SERVICE TRACK [--version VERSION]",
		Short: "Take a track out of every backend's traffic at once (and put a version back)",
		Long: `Set TRACK's weight to 0 in every backend that has it, in one change: the track
gets no new request (with --version, its version is set back too). A backend
that would have no track left with a weight above 0 is refused: set another
track's weight first. Targets, validation and history as for deploy.`,
		Example: `  trackctl rollback account-service canary -n shop --reason "errors in canary"
  trackctl rollback account-service canary --version 1.0 -n shop`,
		Args: exactArgs(2, "SERVICE and TRACK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			track := args[1]
			label := "rollback " + track
			if o.version != "" {
				label += " --version " + o.version
			}
			return e.runChange(cmd.Context(), o, args[0], label, planRollback(track, o.version))
		},
	}
	rollback.Flags().StringVar(&o.version, "version", "", "also set the track's version back to this one")
	cmds := []*cobra.Command{deploy, promote, setWeight, rollback}
	for _, c := range cmds {
		o.add(c)
	}
	return cmds
}

// ChangeResult is what a release command prints with -o json|yaml.
type ChangeResult struct {
	Service string `json:"service"`
	Command string `json:"command"`
	Reason  string `json:"reason,omitempty"`
	Target  string `json:"target"` // the file, or ConfigMap NS/NAME
	Changed bool   `json:"changed"`
	Written bool   `json:"written"` // false with --dry-run, or without a change
	// Refused says why the change was not made (exit 1).
	Refused string                 `json:"refused,omitempty"`
	Spec    []weights.Change       `json:"spec,omitempty"`
	Weights []weights.WeightChange `json:"weights,omitempty"`
	Config  string                 `json:"config,omitempty"` // haproxy.cfg diff
	// From and To are the ConfigMap's resourceVersions before and after.
	From       string        `json:"fromResourceVersion,omitempty"`
	To         string        `json:"toResourceVersion,omitempty"`
	RecordedAs *HistoryEntry `json:"history,omitempty"`
}

// runChange is every release command: read the spec from its store (the
// file or the cluster), plan the edits, apply them to the text, validate
// the result as validate does, diff, and write it (only if nothing changed
// since the read), or print it with --dry-run.
func (e *env) runChange(ctx context.Context, o *releaseOptions, service, command string, plan planner) error {
	switch o.output {
	case "text", "json", "yaml":
	default:
		return usageError{fmt.Sprintf("-o %q: want one of text, json, yaml", o.output)}
	}
	if o.file != "" && (o.kube.kubeconfig != "" || o.kube.context != "") {
		return usageError{"-f edits a file: --kubeconfig and --context are for the cluster (-n picks the namespace of a ConfigMap in the file)"}
	}
	o.reason = strings.TrimSpace(o.reason)
	if strings.IndexFunc(o.reason, unicode.IsControl) >= 0 {
		return usageError{"--reason: control characters (newlines, tabs, escapes) are not allowed: one line of text"}
	}
	var store specStore = &configMapStore{e: e, o: o}
	if o.file != "" {
		store = fileStore{e: e, path: o.file, namespace: o.kube.namespace}
	}
	snap, err := store.read(ctx, service)
	if err != nil {
		return err
	}
	edits, err := plan(snap.spec)
	if err == nil {
		err = checkValues(edits)
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return err
		}
		fmt.Fprintf(e.stderr, "%s: %v; nothing changed\n", service, err)
		e.printRefusal(o, service, command, snap.target, err.Error())
		return errProblems
	}
	edited, err := editText(snap.whole, snap.text, snap.line, snap.indent, edits)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing changed", snap.target, err)
	}
	after, err := e.validateEdit(ctx, store, snap, edited)
	if err != nil {
		printProblems(e.stderr, "", err)
		fmt.Fprintf(e.stderr, "%s: the change %q makes the spec invalid; nothing changed\n", service, command)
		e.printRefusal(o, service, command, snap.target, "the change makes the spec invalid:\n"+err.Error())
		return errProblems
	}
	if err := onlyAsked(snap.spec, after, edits); err != nil {
		return fmt.Errorf("%s: %w; nothing changed", snap.target, err)
	}
	// The diff's labels say which is which.
	before, next := *snap.spec, *after
	before.Source.File, next.Source.File = snap.target+" (now)", snap.target+" (after "+command+")"
	d, err := e.diffOne(&before, &next)
	if err != nil {
		return err
	}
	res := ChangeResult{Service: service, Command: command, Target: snap.target, Reason: o.reason, Changed: d.Status == "changed", Spec: d.Spec, Weights: d.Weights, Config: d.Config}
	if !res.Changed || o.dryRun {
		return e.printChange(o, res)
	}
	if e.beforeWrite != nil {
		e.beforeWrite()
	}
	rec := record{command: command, reason: o.reason}
	for _, c := range d.Spec {
		rec.changes = append(rec.changes, c.String())
	}
	for _, c := range d.Weights {
		rec.changes = append(rec.changes, "backends."+c.String())
	}
	if err := store.write(ctx, snap, edited, rec, &res); err != nil {
		var sc storeConflict
		if errors.As(err, &sc) {
			fmt.Fprintf(e.stderr, "%s: conflict: %v\n", service, sc)
			return errProblems
		}
		return err
	}
	return e.printChange(o, res)
}

// validateEdit checks the edited text as validate does: parsed as the
// store read it, rendered, and haproxy -c when haproxy is installed.
func (e *env) validateEdit(ctx context.Context, store specStore, snap *snapshot, edited []byte) (*weights.Spec, error) {
	after, err := store.parse(snap, edited)
	if err != nil {
		return nil, err
	}
	_, err = e.renderChecked(ctx, after)
	var nc checkerError
	if errors.As(err, &nc) {
		fmt.Fprintf(e.stderr, "note: %v; the change was checked by the spec's rules only\n", nc.err)
		err = nil
	}
	return after, err
}

// printRefusal gives -o json|yaml a result for a refused change too (the
// reason is on stderr as well).
func (e *env) printRefusal(o *releaseOptions, service, command, target, reason string) {
	if o.output != "text" {
		printStructured(e.stdout, o.output, ChangeResult{Service: service, Command: command, Target: target, Refused: reason})
	}
}

func (e *env) printChange(o *releaseOptions, res ChangeResult) error {
	if o.output != "text" {
		return printStructured(e.stdout, o.output, res)
	}
	if !res.Changed {
		fmt.Fprintf(e.stdout, "%s: no change (%s already says so)\n", res.Service, res.Target)
		return nil
	}
	e.printDiff(DiffReport{Changed: true, Services: []ServiceDiff{{Service: res.Service, Status: "changed", Spec: res.Spec, Weights: res.Weights, Config: res.Config}}}, "", "")
	switch {
	case o.dryRun:
		fmt.Fprintf(e.stdout, "\ndry run: %s not changed\n", res.Target)
	case res.To != "":
		fmt.Fprintf(e.stdout, "\n%s updated (resourceVersion %s -> %s); recorded in its history\n", res.Target, res.From, res.To)
	default:
		fmt.Fprintf(e.stdout, "\n%s updated\n", res.Target)
		if res.Reason != "" {
			// The trailer is what history -f reads as the REASON.
			// git -C the file's directory: the command works from anywhere.
			fmt.Fprintf(e.stdout, "reason (for the commit message): %s\ncommit it with the reason that 'trackctl history -f' shows:\n  git -C %s commit -m %s -m %s -- %s\n",
				res.Reason, shellQuote(filepath.Dir(res.Target)), shellQuote(commandLine(res.Service, res.Command)), shellQuote(reasonTrailer+": "+oneLine(res.Reason)), shellQuote(filepath.Base(res.Target)))
		}
	}
	return nil
}

// specConfigMap finds the service's spec ConfigMap in the namespace: the
// one labelled trackrouter.dev/service=SERVICE.
func (e *env) specConfigMap(ctx context.Context, o *releaseOptions, service string) (kubernetes.Interface, *corev1.ConfigMap, error) {
	client, ns := o.client, o.kube.namespace
	if client == nil {
		var err error
		if client, ns, err = o.kube.client(nil); err != nil {
			return nil, nil, err // an apiError, or a usage error
		}
	}
	if ns == "" {
		ns = "default"
	}
	list, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: weights.ServiceLabel + "=" + service})
	if err != nil {
		return nil, nil, apiError{fmt.Errorf("find the spec of %s in namespace %s: %w", service, ns, err)}
	}
	switch len(list.Items) {
	case 0:
		return nil, nil, fmt.Errorf("no spec ConfigMap labelled %s=%s in namespace %s (trackctl status -n %s lists the services)", weights.ServiceLabel, service, ns, ns)
	case 1:
		cm := list.Items[0]
		if _, ok := cm.Data[weights.DataKey]; !ok {
			return nil, nil, fmt.Errorf("ConfigMap %s/%s has no key %s", ns, cm.Name, weights.DataKey)
		}
		return client, &cm, nil
	}
	var names []string
	for _, cm := range list.Items {
		names = append(names, cm.Name)
	}
	return nil, nil, fmt.Errorf("%d ConfigMaps in namespace %s define service %s (%s): the controller runs one; delete the others", len(names), ns, service, strings.Join(names, ", "))
}

// whoAmI is the user the API server authenticates, as kubectl auth whoami
// says; "unknown" when it cannot say.
func whoAmI(ctx context.Context, client kubernetes.Interface) string {
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || r.Status.UserInfo.Username == "" {
		if u := os.Getenv("USER"); u != "" {
			return "unknown (local user " + u + ")"
		}
		return "unknown"
	}
	return r.Status.UserInfo.Username
}

// recordEvent adds a Normal Event on the ConfigMap; failing to is only said.
func recordEvent(ctx context.Context, client kubernetes.Interface, cm *corev1.ConfigMap, h HistoryEntry) {
	msg := fmt.Sprintf("%s ran %s: %s", h.User, h.Command, strings.Join(h.Changes, "; "))
	if h.Reason != "" {
		msg += " (reason: " + h.Reason + ")"
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	now := metav1.NewTime(h.Time)
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: cm.Name + ".", Namespace: cm.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: cm.Namespace, Name: cm.Name, UID: cm.UID, ResourceVersion: cm.ResourceVersion},
		Reason:         "SpecChanged", Message: msg, Type: corev1.EventTypeNormal,
		FirstTimestamp: now, LastTimestamp: now, Count: 1, Source: corev1.EventSource{Component: "trackctl"},
	}
	client.CoreV1().Events(cm.Namespace).Create(ctx, ev, metav1.CreateOptions{})
}

// conflictError: the file changed between the read and the write.
type conflictError struct{}

func (conflictError) Error() string { return "the file changed since it was read" }

// writeInPlace replaces path atomically with data, if it still holds read:
// its mode and owner are kept, a symbolic link stays one (the file it
// points to is replaced), and a file without write permission is refused.
func writeInPlace(path string, read, data []byte) error {
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file: refused", path)
	}
	if info.Mode().Perm()&0o222 == 0 {
		return fmt.Errorf("%s is read-only: refused (make it writable to edit it)", path)
	}
	// A lock against another trackctl, and a compare against anyone else.
	lock, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	now, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(now, read) {
		return conflictError{}
	}
	uid, gid := -1, -1
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		uid, gid = int(st.Uid), int(st.Gid)
	}
	return fsutil.WriteAtomic(path, data, info.Mode().Perm(), uid, gid)
}

// checkValues is release.CheckValues, a usage error.
func checkValues(edits []edit) error {
	if err := release.CheckValues(edits); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// onlyAsked is release.OnlyAsked.
func onlyAsked(before, after *weights.Spec, edits []edit) error {
	return release.OnlyAsked(before, after, edits)
}

// pickIn is pick, narrowed to a namespace when one is given: a file may
// hold the same service for several namespaces.
func pickIn(file string, specs []*weights.Spec, service, namespace string) (*weights.Spec, error) {
	var in []*weights.Spec
	for _, s := range specs {
		if s.Service != service {
			continue
		}
		ns := s.Source.Namespace
		if ns == "" {
			ns = "default"
		}
		if namespace == "" || ns == namespace {
			in = append(in, s)
		}
	}
	switch {
	case len(in) == 1:
		return in[0], nil
	case len(in) > 1:
		var nss []string
		for _, s := range in {
			nss = append(nss, s.Source.Namespace)
		}
		return nil, usageError{fmt.Sprintf("%s holds service %s in several namespaces (%s): pick one with -n", file, service, strings.Join(nss, ", "))}
	case namespace != "":
		return nil, usageError{fmt.Sprintf("%s has no service %q in namespace %s", file, service, namespace)}
	}
	return pick(file, specs, service)
}

// reasonTrailer is the git trailer that carries a file edit's --reason in
// its commit message; history -f reads it.
const reasonTrailer = "Reason"

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// oneLine makes s one line: a trailer ends at a newline.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// commandLine is the command line of a release command: command is its
// verb and arguments after the service ("set-weight canary canary=20").
func commandLine(service, command string) string {
	verb, args, _ := strings.Cut(command, " ")
	return strings.TrimSpace("trackctl " + verb + " " + service + " " + args)
}
