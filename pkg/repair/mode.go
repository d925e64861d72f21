// Package repair is the node agent's repair controller: it finds the pods of
// its node that run without the plug-in's redirect (pkg/unmeshed decides),
// flags each (a Warning Event, a gauge, a log line) and, by mode, deletes,
// labels or repairs it in place, once per sandbox, backing off on failure.
package repair

import "fmt"

// Mode is what the controller does to an unmeshed pod beyond flagging it.
type Mode string

const (
	// ModeDelete deletes the pod (UID precondition): its controller
	// recreates it through a chain that now has mesh-cni. The default.
	ModeDelete Mode = "delete"
	// ModeLabel labels the pod LabelUnmeshed=true and touches nothing else.
	ModeLabel Mode = "label"
	// ModeRepair programs the redirect in the running pod's netns (InPlace).
	ModeRepair Mode = "repair"
	// ModeOff only flags.
	ModeOff Mode = "off"
)

// DefaultMode: zero trust says the hole must close, and delete needs no
// capability, only RBAC the VAP scopes to the agent's own node
// (docs/repair.md).
const DefaultMode = ModeDelete

// LabelUnmeshed is the label ModeLabel sets (value "true").
const LabelUnmeshed = "mesh-cni.io/unmeshed"

// Event reasons, on the pod.
const (
	ReasonUnmeshed = "Unmeshed"
	ReasonDeleted  = "UnmeshedPodDeleted"
	ReasonLabeled  = "UnmeshedPodLabeled"
	ReasonRepaired = "UnmeshedPodRepaired"
	ReasonFailed   = "RepairFailed"
)

// ParseMode validates a --repair-mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeDelete, ModeLabel, ModeRepair, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("repair mode %q: want delete, label, repair or off", s)
}

// action names what the mode does, for the Unmeshed Event and the log.
func (m Mode) action() string {
	switch m {
	case ModeDelete:
		return "deleting it so its controller recreates it redirected (repair mode delete)"
	case ModeLabel:
		return "labelling it " + LabelUnmeshed + "=true (repair mode label)"
	case ModeRepair:
		return "programming the redirect in its running netns (repair mode repair)"
	}
	return "no action (repair mode off)"
}
