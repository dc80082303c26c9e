package kube

import (
	"net/http"
	"strings"

	"k8s.io/client-go/rest"
)

// CountRequests calls count with the verb and resource of every request
// sent with rc (the resource as its URL names it, "leases", "configmaps";
// the verb GET, LIST, WATCH, POST, PUT, PATCH or DELETE), before it is sent.
func CountRequests(rc *rest.Config, count func(verb, resource string)) {
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return countingTransport{rt, count}
	})
}

type countingTransport struct {
	rt    http.RoundTripper
	count func(verb, resource string)
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.count(RequestVerb(r), RequestResource(r.URL.Path))
	return t.rt.RoundTrip(r)
}

// RequestVerb is the API verb of r: a GET of a collection is LIST, with
// watch=true WATCH.
func RequestVerb(r *http.Request) string {
	if r.Method != http.MethodGet {
		return r.Method
	}
	if r.URL.Query().Get("watch") == "true" {
		return "WATCH"
	}
	if segs := apiSegments(r.URL.Path); len(segs)%2 == 1 || len(segs) == 0 {
		return "LIST" // resource, or namespaces/NS/resource
	}
	return "GET"
}

// RequestResource is the resource an API path names ("" for discovery).
func RequestResource(path string) string {
	segs := apiSegments(path)
	switch {
	case len(segs) >= 3 && segs[0] == "namespaces":
		return segs[2]
	case len(segs) >= 1:
		return segs[0]
	}
	return ""
}

// apiSegments are a path's segments after the group and version:
// /api/v1/namespaces/ns/pods/x -> namespaces ns pods x.
func apiSegments(path string) []string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		return segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		return segs[3:]
	}
	return nil
}
