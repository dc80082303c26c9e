// Package examples holds the example specs; the local one is embedded in
// trackrouter for its --demo mode.
package examples

import _ "embed"

// LocalService is examples/local/service.yaml: the account-service example
// with its tracks on loopback ports.
//
//go:embed local/service.yaml
var LocalService []byte
