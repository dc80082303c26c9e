package kube

import (
	"net/http"
	"testing"
)

func TestRequestVerbAndResource(t *testing.T) {
	for _, tc := range []struct{ method, url, verb, resource string }{
		{"GET", "/api/v1/namespaces/shop/configmaps?limit=500&resourceVersion=0", "LIST", "configmaps"},
		{"GET", "/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion=7", "WATCH", "configmaps"},
		{"GET", "/api/v1/namespaces/shop/configmaps/account-service", "GET", "configmaps"},
		{"GET", "/apis/apps/v1/deployments?limit=500", "LIST", "deployments"},
		{"GET", "/api/v1/namespaces", "LIST", "namespaces"},
		{"GET", "/api/v1/namespaces/shop", "GET", "namespaces"},
		{"PUT", "/apis/coordination.k8s.io/v1/namespaces/trackrouter-system/leases/track-controller", "PUT", "leases"},
		{"PATCH", "/apis/apps/v1/namespaces/shop/deployments/a?fieldManager=x", "PATCH", "deployments"},
		{"POST", "/apis/events.k8s.io/v1/namespaces/shop/events", "POST", "events"},
		{"GET", "/api/v1/namespaces/shop/pods/p:9101/proxy/samples", "GET", "pods"},
		{"GET", "/apis", "LIST", ""},
	} {
		r, err := http.NewRequest(tc.method, "https://api.example.com"+tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v, res := RequestVerb(r), RequestResource(r.URL.Path); v != tc.verb || res != tc.resource {
			t.Errorf("%s %s: %s %q, want %s %q", tc.method, tc.url, v, res, tc.verb, tc.resource)
		}
	}
}
