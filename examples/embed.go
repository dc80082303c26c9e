// Package examples holds the example specs; the local one is embedded in
// trackrouter for its --demo mode, the cluster one in tests.
package examples

import (
	"bytes"
	_ "embed"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
)

// LocalService is examples/local/service.yaml: the account-service example
// with its tracks on loopback ports.
//
//go:embed local/service.yaml
var LocalService []byte

// AccountService is examples/account-service/account-service.yaml: the spec ConfigMap and
// its PodTemplate.
//
//go:embed account-service/account-service.yaml
var AccountService []byte

// AccountServiceObjects decodes AccountService into namespace.
func AccountServiceObjects(namespace string) (*corev1.ConfigMap, *corev1.PodTemplate, error) {
	var cm *corev1.ConfigMap
	var tmpl *corev1.PodTemplate
	for _, doc := range bytes.Split(AccountService, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("examples/account-service/account-service.yaml: %w", err)
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			o.Namespace, cm = namespace, o
		case *corev1.PodTemplate:
			o.Namespace, tmpl = namespace, o
		}
	}
	if cm == nil || tmpl == nil {
		return nil, nil, fmt.Errorf("examples/account-service/account-service.yaml: want a ConfigMap and a PodTemplate")
	}
	return cm, tmpl, nil
}
