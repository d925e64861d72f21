package plugin

import (
	"context"
	"time"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/pod"
)

// The agent is asked first and given little time: it answers from memory,
// waiting at most agentWait for a pod its watch has not delivered yet.
// Whatever goes wrong there, the plug-in reads the pod itself, so the agent
// is never a new way for an ADD to fail.
const (
	agentWait     = 500 * time.Millisecond
	agentDeadline = agentWait + 250*time.Millisecond
	reportBudget  = 5 * time.Millisecond // the report never delays a verb more than this
)

// AgentClient is the plug-in's side of the agent socket (agentapi.Client).
type AgentClient interface {
	GetPod(ctx context.Context, req agentapi.PodRequest) (*pod.Pod, string, error)
	Report(ctx context.Context, r *agentapi.Report) error
	Close()
}

// RealAgent connects to the agent at socket; the agent must run as root.
func RealAgent(socket string) AgentClient { return &agentapi.Client{Socket: socket, PeerUID: 0} }

// readPod is the pod source: the node agent's cache, else the API with
// today's retries and failurePolicy (the caller applies the policy).
func (p *Plugin) readPod(inv *invocation) (*pod.Pod, error) {
	if inv.agent != nil {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), agentDeadline)
		pd, uid, err := inv.agent.GetPod(ctx, agentapi.PodRequest{
			Namespace: inv.pod.Namespace, Name: inv.pod.Name, UID: inv.pod.UID,
			WaitMillis: agentWait.Milliseconds(),
		})
		cancel()
		if err == nil {
			inv.out.source, inv.pod.UID = agentapi.SourceCache, uid
			inv.log.Info("pod read", "source", agentapi.SourceCache, "uid", uid, "elapsed", time.Since(start).String())
			return pd, nil
		}
		inv.log.Info("the node agent did not serve the pod; reading it from the API", "error", err.Error(),
			"elapsed", time.Since(start).String())
	}
	inv.out.source = agentapi.SourceAPI
	pd, err := p.lookup(inv)
	if err == nil {
		inv.log.Info("pod read", "source", agentapi.SourceAPI)
	}
	return pd, err
}
