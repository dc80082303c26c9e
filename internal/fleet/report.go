// Package fleet is how the health of a service is judged from the reports
// of its HAProxy pods (contract.Report) and from the cluster: trackctl
// status, the board and track-controller's health loop share it.
package fleet

import "github.com/trackrouter/trackrouter/internal/contract"

// The pod report is the contract's; these names are kept for the readers.
type (
	Report     = contract.Report
	Rejection  = contract.Rejection
	Unreadable = contract.Unreadable
)

// StatusName and Parse: see contract.
var (
	StatusName = contract.StatusName
	Parse      = contract.Parse
)
