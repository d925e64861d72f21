// Package readiness lifts the node's readiness taint (mesh-cni.io/not-ready)
// once the node is really ready for meshed pods: the installation is in
// place, the node agent is ready and the installed plug-in's STATUS passes.
// It only ever removes that taint from its own node, never adds it
// (docs/taint.md).
package readiness

import "fmt"

// Inputs is what the readiness decision looks at.
type Inputs struct {
	// Installed and InstallReason are the installer's State: our entry
	// last in the runtime's conflist, binary and kubeconfig in place.
	Installed     bool
	InstallReason string
	// Agent is the node agent's readiness (pod cache synced, socket
	// listening); nil when ready or when no agent runs.
	Agent error
	// StatusRun says the plug-in's STATUS was run for these inputs;
	// Status is its result (nil: passed).
	StatusRun bool
	Status    error
}

// Decide says whether the node is ready for meshed pods, and why (or why
// not). It is pure; the caller runs STATUS only once the cheaper inputs
// hold.
func Decide(in Inputs) (ready bool, reason string) {
	switch {
	case !in.Installed:
		why := in.InstallReason
		if why == "" {
			why = "the installer has not reported yet"
		}
		return false, "installation not in place: " + why
	case in.Agent != nil:
		return false, fmt.Sprintf("node agent not ready: %v", in.Agent)
	case !in.StatusRun:
		return false, "plug-in STATUS not run yet"
	case in.Status != nil:
		return false, fmt.Sprintf("plug-in STATUS failed: %v", in.Status)
	}
	return true, "installed, node agent ready, plug-in STATUS passed"
}

// needsStatus says whether STATUS is worth running: only once everything
// cheaper holds.
func needsStatus(in Inputs) bool { return in.Installed && in.Agent == nil }
