package inplace

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// RecordID is the sandbox record name of a pod repaired in place: not a
// runtime's container ID (those are hex or UUIDs without a prefix), so it
// cannot overwrite the record of a real sandbox, and one per pod.
func RecordID(uid string) string { return "inplace-" + uid }

// RepairInPlace programs the seed's rules into the running pod's netns as
// ADD would, verifies them and records the pod as redirected. A netns that
// already holds them is left as it is (and recorded). On any error nothing
// of ours is left in the netns and no record is written.
func (r *Repairer) RepairInPlace(ctx context.Context, p *pod.Pod, podIPs []string, cfg *config.Config) (string, error) {
	t, err := r.open(ctx, p, podIPs, cfg)
	if err != nil {
		return "", err
	}
	defer t.ns.Close()
	changed, err := r.program(ctx, t)
	if err != nil {
		return "", fmt.Errorf("pod %s (netns of process %d): %w", ref(p), t.ns.PID, err)
	}
	// Programmed an orphaned netns? The pod (or its sandbox) went away or
	// was replaced meanwhile: the repair did not reach the running pod.
	if err := t.ns.StillPod(); err != nil {
		return "", fmt.Errorf("pod %s: %w; nothing recorded", ref(p), err)
	}
	detail := fmt.Sprintf("programmed the redirect (%s, %s) in the netns of process %d", t.backend, famList(t.fams), t.ns.PID)
	if !changed {
		detail = fmt.Sprintf("the netns of process %d already held the redirect (%s, %s)", t.ns.PID, t.backend, famList(t.fams))
	}
	if err := r.record(p, t, cfg); err != nil {
		// The pod is redirected; only the bookkeeping failed. Say so, as
		// an error: the controller would otherwise see it unmeshed again.
		return detail, fmt.Errorf("pod %s: %s, but the sandbox record could not be written: %w", ref(p), detail, err)
	}
	return detail, nil
}

// program holds the netns lock (the plug-in's flock on the netns inode)
// across the check, the apply, the read-back and any rollback, so a
// concurrent ADD or DEL of the same netns waits for it and vice versa.
func (r *Repairer) program(ctx context.Context, t *target) (changed bool, err error) {
	if l, ok := t.tables.(redirect.Locker); ok {
		unlock, err := l.Lock()
		if err != nil {
			return false, err
		}
		defer unlock()
	}
	ok, _, err := verify(t.tables, t.plan.Rulesets)
	if err != nil {
		return false, err
	}
	if ok {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	// ApplyAll rolls back the families it applied; the failing family is
	// removed too (r.rollback), in case its restore failed after it had
	// committed: the pod was running unmeshed and is left exactly so.
	if err := redirect.ApplyAll(t.tables, t.plan.Rulesets, nil); err != nil {
		return false, errors.Join(fmt.Errorf("programming the redirect: %w", err), r.rollback(t))
	}
	ok, detail, err := verify(t.tables, t.plan.Rulesets)
	if err == nil && !ok {
		err = fmt.Errorf("the rules did not read back as programmed:\n%s", detail)
	}
	if err != nil {
		return false, errors.Join(err, r.rollback(t))
	}
	return true, nil
}

// rollback removes every family of ours again (under the caller's lock).
func (r *Repairer) rollback(t *target) error {
	var errs []error
	for _, fam := range t.fams {
		if err := redirect.Cleanup(t.tables, fam); err != nil {
			errs = append(errs, fmt.Errorf("rolling back %s: %w", fam, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Repairer) record(p *pod.Pod, t *target, cfg *config.Config) error {
	if cfg.SandboxDir == "" {
		return nil // the plug-in keeps no records either
	}
	rec := sandbox.Record{
		ContainerID: RecordID(p.Metadata.UID), Network: cfg.Net.Name, Netns: t.ns.HostPath(),
		Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, UID: p.Metadata.UID,
		Decision: agentapi.DecisionRedirected, Reason: Reason, Time: r.Now().UTC(),
	}
	for _, f := range t.fams {
		rec.Families = append(rec.Families, int(f))
	}
	return sandbox.Write(cfg.SandboxDir, rec)
}

func famList(fams []redirect.Family) string {
	s := ""
	for i, f := range fams {
		if i > 0 {
			s += "+"
		}
		s += f.String()
	}
	return s
}
