package plugin

import (
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// recordSandbox keeps what ADD decided for `mesh-cni inspect`, best
// effort: a record that cannot be written is logged, never fails the ADD
// (inspect then reports the pod as unknown on this node).
func recordSandbox(inv *invocation, args *skel.CmdArgs, fams []redirect.Family) {
	if inv.cfg.SandboxDir == "" || !inv.isK8s {
		return
	}
	r := sandbox.Record{
		ContainerID: args.ContainerID, Netns: args.Netns, IfName: args.IfName,
		Namespace: inv.pod.Namespace, Name: inv.pod.Name, UID: inv.pod.UID,
		Decision: inv.out.decision, Reason: inv.out.reason, Time: time.Now().UTC(),
	}
	for _, f := range fams {
		r.Families = append(r.Families, int(f))
	}
	if err := sandbox.Write(inv.cfg.SandboxDir, r); err != nil {
		inv.log.Warn("could not record the sandbox for mesh-cni inspect", "dir", inv.cfg.SandboxDir, "error", err)
	}
}

// forgetSandbox removes the sandbox's record at DEL, whatever else DEL does.
func forgetSandbox(inv *invocation, args *skel.CmdArgs) {
	if inv.cfg.SandboxDir == "" {
		return
	}
	if err := sandbox.Remove(inv.cfg.SandboxDir, args.ContainerID); err != nil {
		inv.log.Warn("could not remove the sandbox record", "dir", inv.cfg.SandboxDir, "error", err)
	}
}
