package repair

import (
	"context"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/podcache"
	"github.com/meshcni/mesh-cni/pkg/unmeshed"
)

// Verifier reads what a running pod's netns holds (pkg/inplace's Repairer
// can, with the capabilities of the repair-inplace component).
type Verifier interface {
	Verify(ctx context.Context, p *pod.Pod, podIPs []string, cfg *config.Config) (ok bool, detail string, err error)
}

// checkKernel looks, once per sandbox, into the netns of a pod that counts
// as meshed on the word of its ADD record alone, where the agent can read
// netns (mode repair): rules flushed since, or a record that does not match
// the kernel, make it unmeshed too. Other modes have no capability to look
// and keep the record's word.
func (c *Controller) checkKernel(ctx context.Context, key string, e *podcache.Entry, cfg *config.Config, v unmeshed.Verdict) unmeshed.Verdict {
	ver, ok := c.cfg.InPlace.(Verifier)
	if !ok || c.cfg.Mode != ModeRepair || !v.Recorded {
		return v
	}
	c.mu.Lock()
	seen := c.verified[key] == string(e.UID)+"|"+v.Sandbox
	c.mu.Unlock()
	if seen {
		return v
	}
	p := e.Pod
	p.Metadata.Namespace, p.Metadata.Name, p.Metadata.UID = e.Namespace, e.Name, string(e.UID)
	good, detail, err := ver.Verify(ctx, &p, e.Status.PodIPs, cfg)
	if err != nil {
		// Not marked: the next event or the safety resync looks again.
		c.log.Warn("could not read the redirect in the pod's netns; keeping its ADD record's word", "pod", key, "error", err)
		return v
	}
	c.mu.Lock()
	c.verified[key] = string(e.UID) + "|" + v.Sandbox
	c.mu.Unlock()
	if good {
		return v
	}
	return unmeshed.Verdict{Unmeshed: true, Sandbox: v.Sandbox,
		Reason: "its ADD record says redirected but its netns lacks the redirect: " + detail}
}
