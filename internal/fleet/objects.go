package fleet

import (
	"k8s.io/apimachinery/pkg/labels"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"

	"github.com/trackrouter/trackrouter/internal/contract"
	"github.com/trackrouter/trackrouter/weights"
)

// The label selectors of the objects a service's health is judged from
// (Objects): what the controller and the board watch, and what trackctl
// status lists (narrowed to the services asked for).
const (
	// SelectSpecs: the spec ConfigMaps.
	SelectSpecs = weights.ServiceLabel
	// SelectOwned: what the controller owns; of ConfigMaps, the HAProxy
	// tiers' status ConfigMaps and the release ConfigMaps.
	SelectOwned = contract.LabelManagedBy + "=" + contract.ManagedBy
	// SelectLabelled: Deployments (and their EndpointSlices) with a
	// track's or a tier's labels, the controller's or not.
	SelectLabelled = contract.LabelApp + "," + contract.LabelTier
	// SelectRouterPods: the HAProxy tiers' pods.
	SelectRouterPods = contract.LabelApp + "," + contract.LabelTier + "=" + contract.TierRouter
)

// Listers read Objects from informer caches watched with the selectors
// above: the one way the controller's health loop and the board gather
// them.
type Listers struct {
	Specs, Status  corelisters.ConfigMapLister
	Deployments    appslisters.DeploymentLister
	EndpointSlices discoverylisters.EndpointSliceLister
	Pods           corelisters.PodLister
}

// Objects lists every object of the caches.
func (l Listers) Objects() (Objects, error) {
	var objs Objects
	var err error
	if objs.Specs, err = l.Specs.List(labels.Everything()); err != nil {
		return objs, err
	}
	if objs.Status, err = l.Status.List(labels.Everything()); err != nil {
		return objs, err
	}
	if objs.Deployments, err = l.Deployments.List(labels.Everything()); err != nil {
		return objs, err
	}
	if objs.EndpointSlices, err = l.EndpointSlices.List(labels.Everything()); err != nil {
		return objs, err
	}
	objs.Pods, err = l.Pods.List(labels.Everything())
	return objs, err
}
