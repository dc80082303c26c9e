package controller

import (
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/internal/fleet"
	"github.com/trackrouter/trackrouter/weights"
)

// Labels and annotations on everything the controller creates.
const (
	LabelApp       = contract.LabelApp
	LabelTier      = contract.LabelTier
	LabelTrack     = contract.LabelTrack
	LabelVersion   = contract.LabelVersion
	LabelManagedBy = contract.LabelManagedBy
	ManagedBy      = contract.ManagedBy

	// AnnotationSpec names the spec ConfigMap (in the object's namespace)
	// that owns a Service. Services carry no owner reference: deleting and
	// re-creating a spec (kubectl replace --force, a Helm reinstall) must
	// not let the garbage collector take them and their ClusterIPs.
	AnnotationSpec = contract.AnnotationSpec

	TierService = contract.TierService
	TierRouter  = contract.TierRouter
	// routerContainer is the sidecar's container in the HAProxy tier.
	routerContainer = contract.ContainerRouter

	routerMetricsPort = 9101
	// haproxyMetricsPort is HAProxy's Prometheus exporter.
	haproxyMetricsPort = 8404
)

// desired is everything one service spec asks for.
type desired struct {
	tracks   map[string]*appsv1.Deployment // by track name
	services []*corev1.Service             // track Services and the router Service
	router   *appsv1.Deployment
	account  *corev1.ServiceAccount
	// gates is the ServiceAccount of the pipeline's Job gates (nil when no
	// stage has one): no rights, no token.
	gates       *corev1.ServiceAccount
	role        *rbacv1.Role
	roleBinding *rbacv1.RoleBinding
	status      *corev1.ConfigMap // where the HAProxy pods report, see fleet.Report
}

// build computes the desired objects for a spec held in cm, with the track
// Deployments made from tmpl.
func build(spec *weights.Spec, cm *corev1.ConfigMap, tmpl *corev1.PodTemplate, routerImage string) (*desired, error) {
	d := &desired{tracks: make(map[string]*appsv1.Deployment)}
	owner := *metav1.NewControllerRef(cm, corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	meta := func(name string, labels map[string]string) metav1.ObjectMeta {
		l := map[string]string{LabelManagedBy: ManagedBy, weights.ServiceLabel: spec.Service}
		for k, v := range labels {
			l[k] = v
		}
		return metav1.ObjectMeta{Name: name, Namespace: cm.Namespace, Labels: l, OwnerReferences: []metav1.OwnerReference{owner}}
	}
	for _, track := range spec.TrackNames() {
		t := spec.Tracks[track]
		sel := map[string]string{LabelApp: spec.Service, LabelTier: TierService, LabelTrack: track}
		podLabels := map[string]string{LabelVersion: t.Version}
		for k, v := range sel {
			podLabels[k] = v
		}
		pod := *tmpl.Template.DeepCopy()
		pod.Labels = merge(pod.Labels, podLabels)
		if err := setImageTag(&pod.Spec, spec.Service, t.Version); err != nil {
			return nil, fmt.Errorf("PodTemplate %s/%s: %w", tmpl.Namespace, tmpl.Name, err)
		}
		dep := &appsv1.Deployment{
			ObjectMeta: meta(spec.DeploymentName(track), podLabels),
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(t.Replicas)),
				// The version is in the selector: a new version is a new
				// Deployment whose pods the old one never adopts.
				Selector: &metav1.LabelSelector{MatchLabels: podLabels},
				Template: pod,
			},
		}
		if t.Autoscaled {
			// replicas: auto: the field is not the controller's, an HPA
			// sets it and no apply takes it back.
			dep.Spec.Replicas = nil
		}
		d.tracks[track] = dep
		svc := &corev1.Service{
			ObjectMeta: meta(spec.ServiceName(track), sel),
			Spec:       serviceSpec(sel, spec.Port),
		}
		d.services = append(d.services, unowned(svc, cm))
	}

	name := contract.TierName(spec.Service)
	routerLabels := map[string]string{LabelApp: spec.Service, LabelTier: TierRouter}
	d.account = &corev1.ServiceAccount{ObjectMeta: meta(name, routerLabels)}
	for _, t := range spec.Tracks {
		for _, g := range t.Gates {
			if g.Job != nil && d.gates == nil {
				d.gates = &corev1.ServiceAccount{ObjectMeta: meta(GatesAccount(spec.Service), map[string]string{LabelApp: spec.Service}),
					AutomountServiceAccountToken: ptr.To(false)}
			}
		}
	}
	d.role = &rbacv1.Role{
		ObjectMeta: meta(name, routerLabels),
		Rules: []rbacv1.PolicyRule{
			// Only this ConfigMap: the sidecar's informer lists and watches
			// it with a field selector on its name.
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{cm.Name}, Verbs: []string{"get", "list", "watch"}},
			// Its PodTemplate and track Services, to refuse a spec the
			// controller would not deploy.
			{APIGroups: []string{""}, Resources: []string{"podtemplates"}, ResourceNames: []string{spec.Template}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"services"}, ResourceNames: trackServices(spec), Verbs: []string{"get"}},
			// Its Warning Events (a spec it rejects): create only, so that
			// it cannot rewrite another's Event.
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
			// Its report of what HAProxy runs: a Server-Side Apply of its
			// own key in this one ConfigMap (which the controller creates).
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{fleet.StatusName(name)}, Verbs: []string{"patch"}},
		},
	}
	// The status ConfigMap: no service label (it is no spec), so the
	// controller's spec informer never sees it.
	statusMeta := meta(fleet.StatusName(name), routerLabels)
	delete(statusMeta.Labels, weights.ServiceLabel)
	d.status = &corev1.ConfigMap{ObjectMeta: statusMeta}
	d.roleBinding = &rbacv1.RoleBinding{
		ObjectMeta: meta(name, routerLabels),
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: cm.Namespace}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
	}
	router := &appsv1.Deployment{
		ObjectMeta: meta(name, routerLabels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(spec.Router.Replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: routerLabels},
			Template: routerPod(spec, cm, name, routerLabels, routerImage),
		},
	}
	d.router = router
	svc := &corev1.Service{ObjectMeta: meta(spec.Service, routerLabels), Spec: serviceSpec(routerLabels, spec.Port)}
	d.services = append(d.services, unowned(svc, cm))
	return d, nil
}

// trackServices names the track Services of a spec.
func trackServices(spec *weights.Spec) []string {
	var names []string
	for _, t := range spec.TrackNames() {
		names = append(names, spec.ServiceName(t))
	}
	return names
}

// unowned replaces a Service's owner reference with AnnotationSpec.
func unowned(svc *corev1.Service, cm *corev1.ConfigMap) *corev1.Service {
	svc.OwnerReferences = nil
	svc.Annotations = map[string]string{AnnotationSpec: cm.Name}
	return svc
}

func serviceSpec(selector map[string]string, port int) corev1.ServiceSpec {
	return corev1.ServiceSpec{
		Type:     corev1.ServiceTypeClusterIP,
		Selector: selector,
		Ports: []corev1.ServicePort{{
			Name: "http", Protocol: corev1.ProtocolTCP,
			Port: int32(port), TargetPort: intstr.FromInt32(int32(port)),
		}},
	}
}

// routerShutdownDelay and routerStopGrace are the sidecar's shutdown: not
// ready at once, HAProxy accepting for the delay while the endpoints are
// removed, then a soft stop of at most the grace. The pod's termination grace
// period covers both, with a margin.
const (
	routerShutdownDelay = 5
	routerStopGrace     = 30
	routerTermination   = routerShutdownDelay + routerStopGrace + 5
)

// metricsPorts are the sidecar's and HAProxy's metrics ports in the
// HAProxy tier: 9101 and 8404, or the next port when the service listens
// on it (a spec with port: 8404 is valid).
func metricsPorts(servicePort int) (sidecar, haproxy int) {
	sidecar, haproxy = routerMetricsPort, haproxyMetricsPort
	if servicePort == sidecar {
		sidecar++
	}
	if servicePort == haproxy {
		haproxy++
	}
	return sidecar, haproxy
}

// routerPod runs HAProxy and the sidecar in one container (--run-haproxy)
// watching this ConfigMap through the API.
func routerPod(spec *weights.Spec, cm *corev1.ConfigMap, account string, labels map[string]string, image string) corev1.PodTemplateSpec {
	grace := int64(routerTermination)
	sidecarPort, haproxyPort := metricsPorts(spec.Port)
	return corev1.PodTemplateSpec{
		// The usual scrape annotations name HAProxy's exporter (per-track
		// traffic); the sidecar's own metrics are on the port "metrics".
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
			"prometheus.io/scrape": "true",
			"prometheus.io/port":   fmt.Sprint(haproxyPort),
			"prometheus.io/path":   "/metrics",
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName:            account,
			TerminationGracePeriodSeconds: &grace,
			// The restricted Pod Security Standard. The image runs as user
			// 10001 with no capability: a non-root container gets an added
			// capability in its bounding set only, and with no privilege
			// escalation haproxy's file capability is not gained either
			// (measured on a real node: "cannot bind socket (Permission
			// denied) for 0.0.0.0:80"). A port below 1024 is made
			// unprivileged in the pod's own network namespace instead, by
			// a sysctl that every Pod Security level allows.
			SecurityContext: routerSecurity(spec.Port),
			Containers: []corev1.Container{{
				Name:  routerContainer,
				Image: image,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Capabilities: &corev1.Capabilities{
						Drop: []corev1.Capability{"ALL"},
					},
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				Args: []string{
					"--configmap", cm.Namespace + "/" + cm.Name,
					"--run-haproxy",
					"--haproxy-config", "/var/run/haproxy/haproxy.cfg",
					"--master-socket", "/var/run/haproxy/master.sock",
					"--groups-map", "/var/run/haproxy/groups.map",
					"--metrics-addr", fmt.Sprintf(":%d", sidecarPort),
					"--shutdown-delay", fmt.Sprintf("%ds", routerShutdownDelay),
					"--stop-grace", fmt.Sprintf("%ds", routerStopGrace),
					"--report-configmap", fleet.StatusName(account),
					"--haproxy-metrics-addr", fmt.Sprintf(":%d", haproxyPort),
				},
				// POD_IP: the sidecar tells track-controller where it
				// serves /samples for the canary analysis.
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
					{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
				},
				Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: int32(spec.Port), Protocol: corev1.ProtocolTCP},
					{Name: "metrics", ContainerPort: int32(sidecarPort), Protocol: corev1.ProtocolTCP},
					{Name: "haproxy-metrics", ContainerPort: int32(haproxyPort), Protocol: corev1.ProtocolTCP},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("metrics")}}, PeriodSeconds: 2},
				LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("metrics")}}, PeriodSeconds: 10},
				VolumeMounts:   []corev1.VolumeMount{{Name: "run", MountPath: "/var/run/haproxy"}},
			}},
			Volumes: []corev1.Volume{{Name: "run", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// routerSecurity is the HAProxy tier's pod security context: non-root,
// RuntimeDefault seccomp, and for a service port below 1024 the sysctl
// net.ipv4.ip_unprivileged_port_start set to that port (a safe, namespaced
// sysctl: it changes only the pod's network namespace).
func routerSecurity(port int) *corev1.PodSecurityContext {
	sc := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if port < 1024 {
		sc.Sysctls = []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: strconv.Itoa(port)}}
	}
	return sc
}

// setImageTag sets the tag of the container named like the service (or the
// only container) to version.
func setImageTag(pod *corev1.PodSpec, service, version string) error {
	idx := -1
	for i, c := range pod.Containers {
		if c.Name == service {
			idx = i
		}
	}
	if idx < 0 && len(pod.Containers) == 1 {
		idx = 0
	}
	if idx < 0 {
		return fmt.Errorf("no container named %q to set the version on (and not exactly one container)", service)
	}
	image := pod.Containers[idx].Image
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i] // a digest pins another version
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	pod.Containers[idx].Image = image + ":" + version
	return nil
}

func merge(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// GatesAccount is the ServiceAccount a service's Job gates run as: made by
// the controller, bound to nothing, its token not mounted.
func GatesAccount(service string) string { return contract.GatesAccount(service) }
