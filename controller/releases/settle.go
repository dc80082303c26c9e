package releases

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/weights"
)

// A new version of a track is a new Deployment; the track's Service sends
// requests to the old version's pods until the new one is Available and
// the old one's pods are gone (the controller keeps it that long, so the
// track always has endpoints). A stage's gates and bake wait for that:
// HAProxy counts a track's requests, whichever version answered them, and
// a bake that began at once judged the version it replaces (seen on a
// real node: a build failing 2% of requests measured at 1.4%), or, with a
// new Deployment that never starts, only that version.

// settle says why the stage's track does not serve only version yet (""
// when it does), or why it never will (stuck: its Deployment passed its
// progress deadline). deps are the track's Deployments made by the
// controller, sls its Service's EndpointSlices.
func settle(stage, version string, phase pipeline.Phase, deps []*appsv1.Deployment, sls []*discoveryv1.EndpointSlice) (settling, stuck string) {
	then := "its bake starts"
	if phase == pipeline.Gates {
		then = "its gates run"
	}
	then = fmt.Sprintf("; %s once only %s serves", then, version)
	var next *appsv1.Deployment
	var others []string
	for _, d := range deps {
		if d.DeletionTimestamp == nil && d.Labels[contract.LabelVersion] == version {
			next = d
		} else if v := d.Labels[contract.LabelVersion]; !slices.Contains(others, v) {
			others = append(others, v)
		}
	}
	if next == nil {
		return fmt.Sprintf("%s to run %s (its Deployment is not made yet)%s", stage, version, then), ""
	}
	switch why := ProgressDeadlinePassed(next); {
	case why != "":
		return "", fmt.Sprintf("%s never ran %s: Deployment %s passed its progress deadline without becoming available (%s)", stage, version, next.Name, why)
	case !Available(next):
		return fmt.Sprintf("%s's %s pods to be available (Deployment %s)%s", stage, version, next.Name, then), ""
	case len(others) > 0:
		return fmt.Sprintf("%s's %s pods to leave%s", stage, strings.Join(others, ", "), then), ""
	}
	for _, sl := range sls {
		for _, e := range sl.Endpoints {
			if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
				return fmt.Sprintf("%s's old pods to finish leaving%s", stage, then), ""
			}
		}
	}
	return "", ""
}

// Available reports whether a Deployment has all its replicas updated,
// ready and available for its current generation (the controller keeps a
// track's old version until then).
func Available(d *appsv1.Deployment) bool {
	if d.Status.ObservedGeneration < d.Generation {
		return false
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.UpdatedReplicas < want || d.Status.AvailableReplicas < want {
		return false
	}
	for _, cond := range d.Status.Conditions {
		if cond.Type == appsv1.DeploymentAvailable {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return want == 0
}

// ProgressDeadlinePassed is the Deployment's own words when it gave up
// progressing (its Progressing condition False with
// ProgressDeadlineExceeded: progressDeadlineSeconds, 10 minutes by
// default; a missing image, a quota), else "".
func ProgressDeadlinePassed(d *appsv1.Deployment) string {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			if c.Status != corev1.ConditionFalse || c.Reason != "ProgressDeadlineExceeded" {
				return ""
			}
			if c.Message == "" {
				return c.Reason
			}
			return c.Message
		}
	}
	return ""
}

// settling is settle on the informers' caches; nothing when the loop was
// made without them.
func (p *Loop) settling(ns string, spec *weights.Spec, st pipeline.State) (string, string) {
	if p.deployments == nil || p.slices == nil {
		return "", ""
	}
	deps, err := p.deployments.Deployments(ns).List(labels.SelectorFromSet(labels.Set{
		contract.LabelApp: spec.Service, contract.LabelTier: contract.TierService, contract.LabelTrack: st.Stage}))
	if err != nil {
		return err.Error(), ""
	}
	sls, err := p.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: spec.ServiceName(st.Stage)}))
	if err != nil {
		return err.Error(), ""
	}
	return settle(st.Stage, st.Version, st.Phase, deps, sls)
}
