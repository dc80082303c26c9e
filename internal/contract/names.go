// Package contract is what trackrouter's three programs say to each
// other, in one place: the names (labels, annotations, ConfigMap names and
// keys) the controller, the sidecar and trackctl find each other's objects
// by, the report each sidecar writes of what its HAProxy runs, and the
// samples wire format the controller reads for the canary analysis. All
// three import it; it imports none of them (a test checks both), so no
// program links another's code through it.
package contract

// Labels and annotations on what track-controller makes, and on what
// users make for it.
const (
	// LabelManagedBy = ManagedBy marks everything the controller owns.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "track-controller"
	// LabelApp (the service), LabelTier (TierService or TierRouter),
	// LabelTrack and LabelVersion are on the Deployments, their pods and
	// the Services the controller makes.
	LabelApp     = "app"
	LabelTier    = "tier"
	LabelTrack   = "track"
	LabelVersion = "version"
	TierService  = "service"
	TierRouter   = "router"
	// ContainerRouter is the sidecar's container in an HAProxy pod; its
	// port named "metrics" serves /samples.
	ContainerRouter = "trackrouter"
	// AnnotationSpec names the spec ConfigMap a Service belongs to.
	AnnotationSpec = "trackrouter.dev/spec"
	// AnnotationPipeline = PipelineGitOps on a spec ConfigMap keeps git the
	// source of the spec: the pipeline records its edits as pending.
	AnnotationPipeline = "trackrouter.dev/pipeline"
	PipelineGitOps     = "gitops"
	// LabelReleaseOf names the service a release ConfigMap is of.
	LabelReleaseOf = "trackrouter.dev/release-of"
)

// A service's release ConfigMap (ReleaseName): the state, written by the
// controller only, and the people's keys, written by trackctl approve,
// pause and abort (examples/install/release-access.yaml says who may).
const (
	KeyState    = "state"
	KeyPaused   = "paused"
	KeyAbort    = "abort"
	KeyApproved = "approved." // + stage
)

// ReleaseName is the name of a service's release ConfigMap.
func ReleaseName(service string) string { return service + "-release" }

// TierName is the name of a service's HAProxy tier: its Deployment,
// Service account and Role.
func TierName(service string) string { return service + "-haproxy" }

// StatusName is the ConfigMap where the HAProxy pods of the tier named
// tier (TierName) report: one data key per pod. The controller creates
// it; each sidecar may patch exactly this object.
func StatusName(tier string) string { return tier + "-status" }

// GatesAccount is the ServiceAccount a service's Job gates run as (made
// by the controller with no rights: a gate reads no Secret through it).
func GatesAccount(service string) string { return service + "-gates" }
