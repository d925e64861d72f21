package repair

import (
	"context"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
)

// InPlace programs the seed's rules in a running pod's netns, as ADD would.
// pkg/inplace implements it (and writes the sandbox record, so the pod then
// counts as meshed); the wiring in cmd/install-cni passes it in, so
// pkg/inplace never imports this package.
type InPlace interface {
	RepairInPlace(ctx context.Context, p *pod.Pod, podIPs []string, cfg *config.Config) (detail string, err error)
}
