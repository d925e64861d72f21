package agent

import (
	"errors"

	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/meshcni/mesh-cni/pkg/repair"
)

// EnableRepair builds the repair controller (pkg/repair, docs/repair.md)
// on the agent's pod cache, Event recorder, metrics registry and logger, in
// the configured --repair-mode; Run runs it. state is the installer's last
// word (installer OnState); call the controller's Notify when it changes.
// inPlace is needed by mode repair only.
func (a *Agent) EnableRepair(pods typedcorev1.PodsGetter, inPlace repair.InPlace, state func() (conflistPath string, installed bool)) (*repair.Controller, error) {
	if a.ran.Load() || a.repair != nil {
		return nil, errors.New("agent: EnableRepair after Run or twice")
	}
	mode := a.cfg.RepairMode
	if mode == "" {
		mode = repair.DefaultMode
	}
	rc := repair.Config{Mode: mode, NodeName: a.cfg.NodeName, State: state, Cache: a.cache, Pods: pods,
		InPlace: inPlace, Registry: a.reg, Logger: a.cfg.Logger}
	if a.events != nil {
		rc.Recorder = a.events.rec
	}
	ctl, err := repair.New(rc)
	if err != nil {
		return nil, err
	}
	a.repair = ctl
	return ctl, nil
}
