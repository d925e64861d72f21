package plugin

import (
	"encoding/json"
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
		ContainerID: args.ContainerID, Network: inv.cfg.Net.Name, Netns: args.Netns, IfName: args.IfName,
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

// pruneSandboxes is GC's part: the records of this network whose sandbox
// the runtime no longer lists (a DEL that never reached us) are removed, so
// inspect does not report long-gone pods. Without the list nothing is
// pruned: an empty runtime answer must not read as "everything is gone".
func pruneSandboxes(inv *invocation, stdin []byte) {
	if inv.cfg.SandboxDir == "" {
		return
	}
	var gc struct {
		Valid *[]struct {
			ContainerID string `json:"containerID"`
		} `json:"cni.dev/valid-attachments"`
	}
	if err := json.Unmarshal(stdin, &gc); err != nil || gc.Valid == nil {
		return
	}
	valid := map[string]bool{}
	for _, a := range *gc.Valid {
		valid[a.ContainerID] = true
	}
	entries, err := sandbox.List(inv.cfg.SandboxDir)
	if err != nil {
		inv.log.Warn("GC: could not read the sandbox records", "dir", inv.cfg.SandboxDir, "error", err)
		return
	}
	for _, e := range entries {
		if e.Err != nil || e.Record.Network != inv.cfg.Net.Name || valid[e.Record.ContainerID] {
			continue
		}
		if err := sandbox.Remove(inv.cfg.SandboxDir, e.Record.ContainerID); err != nil {
			inv.log.Warn("GC: could not remove a stale sandbox record", "containerID", e.Record.ContainerID, "error", err)
			continue
		}
		inv.log.Info("GC: removed the record of a sandbox the runtime no longer has", "containerID", e.Record.ContainerID,
			"pod", e.Record.Namespace+"/"+e.Record.Name)
	}
}
