package trackctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/trackrouter/trackrouter/internal/release"
	"github.com/trackrouter/trackrouter/weights"
)

// specStore is where a release command reads a service's spec and writes
// the edited one back: a manifest in git (fileStore) or the spec ConfigMap
// in the cluster (configMapStore). A write happens only if nothing changed
// since the read; else it is a conflict and nothing is written.
type specStore interface {
	// read takes a snapshot of service's spec.
	read(ctx context.Context, service string) (*snapshot, error)
	// parse reads an edited text of the snapshot as read did.
	parse(snap *snapshot, edited []byte) (*weights.Spec, error)
	// write stores the edited text with the change's record, and says
	// what was written in res.
	write(ctx context.Context, snap *snapshot, edited []byte, rec record, res *ChangeResult) error
}

// snapshot is a spec as a store read it.
type snapshot struct {
	spec   *weights.Spec
	whole  []byte // the text written back: the file, or the ConfigMap's service.yaml
	text   []byte // the spec's part of whole, which the edits apply to
	line   int    // of text's first line in whole
	indent int    // of text in whole (a ConfigMap's literal block in a file)
	target string // "FILE" or "ConfigMap NS/NAME", for messages
	cm     *corev1.ConfigMap
}

// record is what a change is recorded with.
type record struct {
	command, reason string
	changes         []string // "field old->new"
}

// storeConflict is a write refused because the spec changed since it was
// read; its text says what to do.
type storeConflict struct{ msg string }

func (c storeConflict) Error() string { return c.msg }

// fileStore edits a manifest or bare service.yaml in place.
type fileStore struct {
	e         *env
	path      string
	namespace string // -n: which namespace's spec, when the file holds several
}

func (f fileStore) read(_ context.Context, service string) (*snapshot, error) {
	whole, _, err := f.e.readInput(f.path)
	if err != nil {
		return nil, err
	}
	if len(whole) > weights.MaxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", f.path, weights.MaxFileBytes)
	}
	specs, err := weights.Parse(f.path, whole)
	if weights.IsNoSpec(err) {
		// A kustomization, a Deployment: not a spec at all.
		return nil, usageError{fmt.Sprintf("%s is not a spec: it holds no service.yaml (a document with a service: field) and no ConfigMap with the key %s; -f names the manifest that holds the spec", f.path, weights.DataKey)}
	}
	if err != nil {
		return nil, printProblems(f.e.stderr, "", fmt.Errorf("%s is invalid already; fix it first:\n%w", f.path, err))
	}
	spec, err := pickIn(f.path, specs, service, f.namespace)
	if err != nil {
		return nil, err
	}
	text, line, indent, err := specText(whole, spec)
	if err != nil {
		return nil, err
	}
	return &snapshot{spec: spec, whole: whole, text: text, line: line, indent: indent, target: f.path}, nil
}

func (f fileStore) parse(snap *snapshot, edited []byte) (*weights.Spec, error) {
	specs, err := weights.Parse(f.path, edited)
	if err != nil {
		return nil, err
	}
	return pickIn(f.path, specs, snap.spec.Service, f.namespace)
}

func (f fileStore) write(_ context.Context, snap *snapshot, edited []byte, _ record, res *ChangeResult) error {
	if err := writeInPlace(f.path, snap.whole, edited); err != nil {
		var ce conflictError
		if errors.As(err, &ce) {
			return storeConflict{fmt.Sprintf("%s changed since it was read; nothing was written: run the command again", f.path)}
		}
		return err
	}
	res.Written = true
	return nil
}

// configMapStore edits the spec ConfigMap in the cluster: an update that
// carries the resourceVersion read, the change in the history annotation,
// and a Normal Event SpecChanged.
type configMapStore struct {
	e      *env
	o      *releaseOptions
	client kubernetes.Interface // set by read
}

func (c *configMapStore) read(ctx context.Context, service string) (*snapshot, error) {
	client, cm, err := c.e.specConfigMap(ctx, c.o, service)
	if err != nil {
		return nil, err
	}
	c.client = client
	text := []byte(cm.Data[weights.DataKey])
	spec, err := weights.ParseService(weights.ConfigMapSource(cm.Namespace, cm.Name), text)
	if err != nil {
		return nil, printProblems(c.e.stderr, "", fmt.Errorf("the spec in ConfigMap %s/%s is invalid already; fix it first:\n%w", cm.Namespace, cm.Name, err))
	}
	return &snapshot{spec: spec, whole: text, text: text, target: "ConfigMap " + cm.Namespace + "/" + cm.Name, cm: cm}, nil
}

func (c *configMapStore) parse(snap *snapshot, edited []byte) (*weights.Spec, error) {
	return weights.ParseService(snap.spec.Source, edited)
}

func (c *configMapStore) write(ctx context.Context, snap *snapshot, edited []byte, rec record, res *ChangeResult) error {
	entry := HistoryEntry{Time: time.Now().UTC().Truncate(time.Second), User: whoAmI(ctx, c.client), Command: "trackctl " + rec.command,
		Reason: rec.reason, From: snap.cm.ResourceVersion, Changes: rec.changes}
	cm := snap.cm
	// The update carries the resourceVersion read: if anyone changed the
	// ConfigMap since, the API refuses and nothing is written.
	updated, err := release.WriteSpec(ctx, c.client, cm, edited, entry, "trackctl")
	if apierrors.IsConflict(err) {
		return storeConflict{fmt.Sprintf("ConfigMap %s/%s changed since it was read (resourceVersion %s); nothing was written: look at trackctl history %s and run the command again",
			cm.Namespace, cm.Name, cm.ResourceVersion, snap.spec.Service)}
	}
	if err != nil {
		return apiError{fmt.Errorf("update ConfigMap %s/%s: %w (nothing was written)", cm.Namespace, cm.Name, err)}
	}
	res.Written, res.From, res.To, res.RecordedAs = true, cm.ResourceVersion, updated.ResourceVersion, &entry
	recordEvent(ctx, c.client, updated, entry)
	return nil
}
