package releases

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/pipeline"
)

func trackDeployment(version string, ready int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	replicas := int32(4)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-canary-" + version, Generation: 1, Labels: map[string]string{contract.LabelVersion: version}},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
		Status:     appsv1.DeploymentStatus{ObservedGeneration: 1, UpdatedReplicas: ready, AvailableReplicas: ready, Conditions: conds},
	}
}

var (
	isAvailable = appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}
	notYet      = appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse}
	pastDue     = appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		Message: `ReplicaSet "web-canary-1.2-7d9" has timed out progressing.`}
)

func slice(terminating ...bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{}
	for _, term := range terminating {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Terminating: &term}})
	}
	return s
}

// TestSettle: a stage serves only its build once the build's Deployment
// is available, no other version's Deployment is left and no pod of the
// track Service is still leaving.
func TestSettle(t *testing.T) {
	gone := trackDeployment("1.1", 4, isAvailable)
	gone.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	for _, c := range []struct {
		name          string
		phase         pipeline.Phase
		deps          []*appsv1.Deployment
		slices        []*discoveryv1.EndpointSlice
		settling, stk string
	}{
		{"not made yet", pipeline.Baking, []*appsv1.Deployment{trackDeployment("1.1", 4, isAvailable)}, nil,
			"canary to run 1.2 (its Deployment is not made yet); its bake starts once only 1.2 serves", ""},
		{"starting", pipeline.Gates, []*appsv1.Deployment{trackDeployment("1.1", 4, isAvailable), trackDeployment("1.2", 2, notYet)}, nil,
			"canary's 1.2 pods to be available (Deployment web-canary-1.2); its gates run once only 1.2 serves", ""},
		{"the old one left", pipeline.Baking, []*appsv1.Deployment{trackDeployment("1.1", 4, isAvailable), trackDeployment("1.2", 4, isAvailable)}, nil,
			"canary's 1.1 pods to leave", ""},
		{"the old one being deleted", pipeline.Baking, []*appsv1.Deployment{gone, trackDeployment("1.2", 4, isAvailable)}, nil,
			"canary's 1.1 pods to leave", ""},
		{"old pods finishing", pipeline.Baking, []*appsv1.Deployment{trackDeployment("1.2", 4, isAvailable)}, []*discoveryv1.EndpointSlice{slice(false, true)},
			"canary's old pods to finish leaving", ""},
		{"settled", pipeline.Baking, []*appsv1.Deployment{trackDeployment("1.2", 4, isAvailable)}, []*discoveryv1.EndpointSlice{slice(false, false)}, "", ""},
		{"never starts", pipeline.Baking, []*appsv1.Deployment{trackDeployment("1.1", 4, isAvailable), trackDeployment("1.2", 0, notYet, pastDue)}, nil,
			"", `canary never ran 1.2: Deployment web-canary-1.2 passed its progress deadline without becoming available (ReplicaSet "web-canary-1.2-7d9" has timed out progressing.)`},
	} {
		settling, stuck := settle("canary", "1.2", c.phase, c.deps, c.slices)
		if !strings.HasPrefix(settling, c.settling) || (c.settling == "") != (settling == "") || stuck != c.stk {
			t.Errorf("%s: settling %q stuck %q, want %q and %q", c.name, settling, stuck, c.settling, c.stk)
		}
	}
}
