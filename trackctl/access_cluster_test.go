package trackctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/trackrouter/trackrouter/controller"
	"github.com/trackrouter/trackrouter/internal/pipeline"
	"github.com/trackrouter/trackrouter/internal/testing/haproxytest"
	"github.com/trackrouter/trackrouter/internal/testing/testcluster"
	"github.com/trackrouter/trackrouter/weights"
)

// installAccess puts examples/install/release-access.yaml in the cluster:
// its policy (bound to ns only, so that the package's other tests are not
// under it) and its roles.
func installAccess(t *testing.T, c *testcluster.Cluster, ns string) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile("../examples/install/release-access.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(b, []byte("\n---")) {
		var head struct{ Kind string }
		if err := sigsyaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		switch head.Kind {
		case "ValidatingAdmissionPolicy":
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			must(t, sigsyaml.UnmarshalStrict(doc, &p))
			if _, err := c.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		case "ValidatingAdmissionPolicyBinding":
			var pb admissionregistrationv1.ValidatingAdmissionPolicyBinding
			must(t, sigsyaml.UnmarshalStrict(doc, &pb))
			pb.Name += "-" + ns
			pb.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}
			if _, err := c.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &pb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				c.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(context.Background(), pb.Name, metav1.DeleteOptions{})
			})
		case "ClusterRole":
			var r rbacv1.ClusterRole
			must(t, sigsyaml.UnmarshalStrict(doc, &r))
			if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &r, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		case "":
		default:
			t.Fatalf("release-access.yaml: a %s the test does not install", head.Kind)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// user is someone with a client certificate of the test cluster, bound
// to a ClusterRole in a namespace.
type user struct {
	name, kubeconfig string
	client           kubernetes.Interface
}

func newUser(t *testing.T, c *testcluster.Cluster, ns, name, clusterRole string) user {
	t.Helper()
	cert, key, err := c.ClientCert(name)
	must(t, err)
	u := user{name: name, kubeconfig: filepath.Join(t.TempDir(), "kubeconfig")}
	must(t, c.WriteKubeconfig(u.kubeconfig, cert, key))
	rc, err := clientcmd.BuildConfigFromFlags("", u.kubeconfig)
	must(t, err)
	u.client = kubernetes.NewForConfigOrDie(rc)
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: name}}}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(context.Background(), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return u
}

// runAs runs trackctl as u against the rig's namespace.
func (r *pipelineRig) runAs(u user, args ...string) (int, string) {
	r.t.Helper()
	return r.trackctl(append(args, "--kubeconfig", u.kubeconfig, "-n", r.ns)...)
}

// TestReleaseAccessOnCluster: with examples/install's policy, roles and
// webhook, a service-team member (real client certificates, RBAC as
// shipped) deploys but cannot approve, pause, resume, abort or promote,
// neither with trackctl nor with a patch of the release ConfigMap, nor
// write the release state, nor forge an approval in QA's name, nor take
// the label off; QA approves, recorded by the API server's name, and can
// neither sign as another nor pause; who runs releases pauses, resumes and
// promotes.
func TestReleaseAccessOnCluster(t *testing.T) {
	c := testcluster.Get(t)
	ctx := context.Background()
	ns := specNamespace(t, c, "access")
	installAccess(t, c, ns)
	r := bareFleet(t, c, ns)
	r.setSpec(`service: account-service
port: 8080
template: account-service
router: {replicas: 1}
tracks:
  internal: {version: "1.0", replicas: 1, gates: [approval]}
  canary: {version: "1.0", replicas: 1, gates: [approval]}
  production: {version: "1.0", replicas: 1}
groups: {INTERNAL: internal, FREE: free}
default: all
backends:
  internal: {internal: 100}
  free: {canary: 5, production: 95}
  all: {production: 100}
`)
	// The webhook, for this namespace only, served by the controller here.
	addr := fmt.Sprintf("127.0.0.1:%d", haproxytest.FreePort(t))
	vwcName := "track-controller-" + ns
	fail, none := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: vwcName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "specs.trackrouter.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://" + addr + "/validate")},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"CREATE", "UPDATE"}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: weights.ServiceLabel, Operator: metav1.LabelSelectorOpExists}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          ptr.To[int32](5),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if _, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), vwcName, metav1.DeleteOptions{})
	})
	r.startControllerWith(controller.Config{Webhook: controller.WebhookConfig{Addr: addr, Secret: ns + "/webhook", Configuration: vwcName,
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, Refresh: time.Second}})
	t.Cleanup(func() { r.stopCtrl() })
	p := &pipelineRig{fleetRig: r}
	p.waitRelease("", pipeline.Idle, "")
	r.poll("the webhook answers", func() error {
		cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "account-service", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cm.Data[weights.DataKey] = "service: ["
		if _, err := c.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil || !strings.Contains(err.Error(), "invalid YAML") {
			return fmt.Errorf("%v", err)
		}
		return nil
	})

	bob := newUser(t, c, ns, "dev-bob", "trackrouter-service-team")
	alice := newUser(t, c, ns, "qa-alice", "trackrouter-qa")
	carol := newUser(t, c, ns, "rel-carol", "trackrouter-release")
	rel := pipeline.ConfigMapName("account-service")
	refused := func(who user, what string, code int, out string, words ...string) {
		t.Helper()
		t.Logf("%s: %s: exit %d: %s", who.name, what, code, out)
		if code == ExitOK {
			t.Errorf("%s: %s was not refused:\n%s", who.name, what, out)
			return
		}
		for _, w := range words {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %s refused without saying %q:\n%s", who.name, what, w, out)
			}
		}
	}
	patch := func(who user, data map[string]any) (int, string) {
		b, err := json.Marshal(map[string]any{"data": data})
		must(t, err)
		_, err = who.client.CoreV1().ConfigMaps(ns).Patch(ctx, rel, types.MergePatchType, b, metav1.PatchOptions{})
		if err != nil {
			return ExitProblem, err.Error()
		}
		return ExitOK, ""
	}

	// The team deploys: the first stage needs no release verb.
	if code, out := p.runAs(bob, "deploy", "account-service", "1.1"); code != ExitOK {
		t.Fatalf("the team's deploy: %s", out)
	}
	p.waitRelease("1.1", pipeline.Gates, "internal")
	future := "1.1 by qa-alice at 2099-01-01T00:00:00Z"
	code, out := p.runAs(bob, "approve", "account-service")
	refused(bob, "trackctl approve", code, out, "dev-bob may not approve releases of account-service", "trackrouter-qa")
	code, out = patch(bob, map[string]any{"approved.internal": future})
	refused(bob, "a patch of an approval in QA's name", code, out, "may not approve")
	code, out = patch(bob, map[string]any{"state": `{"phase":"gates","gate":99,"version":"1.1","stage":"internal"}`})
	refused(bob, "a patch of the release state", code, out, "only track-controller writes state")
	for _, cmd := range []string{"pause", "abort"} {
		code, out = p.runAs(bob, cmd, "account-service")
		refused(bob, "trackctl "+cmd, code, out, "dev-bob may not "+cmd)
	}
	code, out = patch(bob, map[string]any{"paused": "by dev-bob at 2026-12-06T10:00:00Z"})
	refused(bob, "a patch of paused in his own name", code, out, "dev-bob may not pause")
	code, out = patch(bob, map[string]any{"abort": "1.1 by dev-bob at 2026-12-06T10:00:00Z"})
	refused(bob, "a patch of abort in his own name", code, out, "dev-bob may not abort")
	err := bob.client.CoreV1().ConfigMaps(ns).Delete(ctx, rel, metav1.DeleteOptions{})
	refused(bob, "deleting the release ConfigMap (the versions it last saw)", codeOf(err), fmt.Sprint(err), "dev-bob may not delete "+rel, "goes with its spec")
	code, out = p.runAs(bob, "promote", "account-service", "1.1")
	refused(bob, "trackctl promote", code, out, "dev-bob may not move a release of account-service", "tracks.canary.version 1.0->1.1", "trackrouter-release")
	_, err = bob.client.CoreV1().ConfigMaps(ns).Patch(ctx, rel, types.MergePatchType, []byte(`{"metadata":{"labels":{"trackrouter.dev/release-of":null}}}`), metav1.PatchOptions{})
	refused(bob, "taking the label off", codeOf(err), fmt.Sprint(err), "is track-controller's")
	// Relabelled as another service's (where one may approve), approved,
	// and labelled back: the label never changes.
	_, err = bob.client.CoreV1().ConfigMaps(ns).Patch(ctx, rel, types.MergePatchType, []byte(`{"metadata":{"labels":{"trackrouter.dev/release-of":"web"}}}`), metav1.PatchOptions{})
	refused(bob, "relabelling the release ConfigMap", codeOf(err), fmt.Sprint(err), "is track-controller's")
	if st := p.state(); st.Phase != pipeline.Gates || st.Stage != "internal" || st.Version != "1.1" {
		t.Fatalf("after the team's tries: %s %s on %s", st.Version, st.Phase, st.Stage)
	}

	// QA approves, under the name the API server knows; cannot sign as
	// another, nor pause.
	code, out = patch(alice, map[string]any{"approved.internal": "1.1 by qa-bob at 2026-12-06T10:00:00Z"})
	refused(alice, "an approval signed with another's name", code, out, `by qa-alice at TIME`)
	code, out = patch(alice, map[string]any{"approved.internal": "1.1 by qa-bob at 2026-12-06T10:00:00Z by qa-alice at 2026-12-06T10:00:00Z"})
	refused(alice, "an approval with another's name before hers", code, out, `by qa-alice at TIME`)
	code, out = p.runAs(alice, "approve", "account-service", "--reason", "<!channel> ok")
	refused(alice, "trackctl approve --reason with a Slack mention", code, out, "< and > are not allowed")
	code, out = patch(alice, map[string]any{"approved.internal": "1.1 by qa-alice at 2026-12-06T10:00:00Z: <!channel> ok"})
	refused(alice, "an approval that mentions a Slack channel", code, out, "no < or >")
	code, out = p.runAs(alice, "pause", "account-service")
	refused(alice, "trackctl pause", code, out, "qa-alice may not pause")
	// From trackctl board, on each one's own credentials: the team's
	// button is refused as its command is; a button pressed without the
	// page's token (another site's page) is refused before anything runs;
	// QA's approves, and status shows it.
	boardOf := func(u user) string {
		o := &boardOptions{samples: "off"}
		o.kube.kubeconfig, o.kube.namespace = u.kubeconfig, ns
		return serveBoard(t, o)
	}
	bobBoard, aliceBoard := boardOf(bob), boardOf(alice)
	r.poll("the boards show the release's buttons", func() error {
		for _, a := range []string{bobBoard, aliceBoard} {
			if _, page := get(t, "http://"+a+"/service/"+ns+"/account-service"); !strings.Contains(page, ">Approve 1.1</button>") {
				return fmt.Errorf("no Approve button on %s", a)
			}
		}
		return nil
	})
	code, out = boardAction(t, bobBoard, ns, "account-service", "Approve 1.1", true)
	refused(bob, "Approve on the board", map[bool]int{true: ExitOK, false: ExitProblem}[code == 200], out, "dev-bob may not approve releases of account-service")
	code, out = boardAction(t, aliceBoard, ns, "account-service", "Approve 1.1", false)
	refused(alice, "Approve on the board without the page's token", map[bool]int{true: ExitOK, false: ExitProblem}[code == 200], out, "no token of this board's run")
	if code, out := boardAction(t, aliceBoard, ns, "account-service", "Approve 1.1", true); code != 200 {
		t.Fatalf("QA's approval from the board: %d %s", code, out)
	}
	st := p.waitRelease("1.1", pipeline.Gates, "canary")
	if !strings.Contains(strings.Join(decisionReasons(st), "\n"), "approved by qa-alice") {
		t.Errorf("the approval is not recorded under QA's name: %v", decisionReasons(st))
	}
	r.poll("the board draws the release on its path", func() error {
		_, page := get(t, "http://"+aliceBoard+"/service/"+ns+"/account-service")
		for _, want := range []string{`<span class="step passed">✓ internal</span>`, `<span class="step here">▶ canary (gates)</span>`, `<span class="step ">production</span>`} {
			if !strings.Contains(page, want) {
				return fmt.Errorf("no %s", want)
			}
		}
		return nil
	})
	if _, out := r.status("account-service"); !strings.Contains(out, "canary") || !strings.Contains(out, "1.1") {
		t.Errorf("status after the board's approval:\n%s", out)
	}

	// Who runs releases pauses, resumes and promotes by hand; the team
	// cannot resume what they paused.
	if code, out := p.runAs(carol, "pause", "account-service"); code != ExitOK {
		t.Fatalf("%s pause: %s", carol.name, out)
	}
	code, out = p.runAs(bob, "resume", "account-service")
	refused(bob, "trackctl resume", code, out, "dev-bob may not pause or resume")
	code, out = patch(bob, map[string]any{"paused": nil})
	refused(bob, "a patch that removes paused", code, out, "dev-bob may not pause or resume")
	if code, out := p.runAs(carol, "resume", "account-service"); code != ExitOK {
		t.Fatalf("%s resume: %s", carol.name, out)
	}
	if code, out := p.runAs(carol, "promote", "account-service", "1.1"); code != ExitOK {
		t.Fatalf("%s promote: %s", carol.name, out)
	}
	p.waitRelease("1.1", pipeline.Done, "production")

	// The spec's label taken off with a build moved in the same write (no
	// spec then, so no check), and put back: compared with what the release
	// last saw, it needs the verb promote.
	cms := bob.client.CoreV1().ConfigMaps(ns)
	spec, err := cms.Get(ctx, "account-service", metav1.GetOptions{})
	must(t, err)
	delete(spec.Labels, weights.ServiceLabel)
	spec.Data[weights.DataKey] = strings.Replace(spec.Data[weights.DataKey], `canary: {version: "1.1"`, `canary: {version: "6.6"`, 1)
	if !strings.Contains(spec.Data[weights.DataKey], `"6.6"`) {
		t.Fatalf("the spec as it is now has no canary version 1.1:\n%s", spec.Data[weights.DataKey])
	}
	spec, err = cms.Update(ctx, spec, metav1.UpdateOptions{})
	must(t, err)
	spec.Labels = map[string]string{weights.ServiceLabel: "account-service"}
	_, err = cms.Update(ctx, spec, metav1.UpdateOptions{})
	refused(bob, "the spec labelled again with a moved build", codeOf(err), fmt.Sprint(err), "dev-bob may not move a release of account-service", "tracks.canary.version 1.1->6.6 (as the release last saw it)")
}

func codeOf(err error) int {
	if err != nil {
		return ExitProblem
	}
	return ExitOK
}

func decisionReasons(st pipeline.State) []string {
	var out []string
	for _, d := range st.Decisions {
		out = append(out, d.Reason)
	}
	return out
}
