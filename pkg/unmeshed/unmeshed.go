// Package unmeshed decides, purely, whether a pod of the node runs without
// the plug-in's redirect: the pod as the agent's cache holds it now, the
// plug-in's config as installed and the plug-in's ADD records in, a verdict
// with a reason out.
package unmeshed

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/podcache"
	"github.com/meshcni/mesh-cni/pkg/podcheck"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// Verdict is the decision and why.
type Verdict struct {
	Unmeshed bool
	Reason   string
	// Sandbox names the pod's current sandbox (UID, when it got its network,
	// its IPs): the controller acts at most once per Sandbox.
	Sandbox string
	// Recorded is set when the pod counts as meshed on the word of an ADD
	// record alone: where the agent can read the netns (repair mode), the
	// controller checks the kernel agrees.
	Recorded bool
}

func meshed(format string, a ...any) Verdict { return Verdict{Reason: fmt.Sprintf(format, a...)} }

// Decide applies every condition. A pod is unmeshed when its sandbox has
// its network, it is not hostNetwork nor being deleted, it qualifies now as
// the plug-in would decide today, and no ADD record of it says redirected.
func Decide(e *podcache.Entry, cfg *config.Config, records []sandbox.Entry) Verdict {
	p, s := &e.Pod, &e.Status
	if v, decided := podcheck.PreLookup(e.Namespace, e.Name, cfg.Pods); decided {
		return meshed("%s", v.Reason)
	}
	switch {
	case s.HostNetwork:
		return meshed("hostNetwork pod: no netns of its own to redirect")
	case s.Deleting:
		return meshed("being deleted")
	case s.Phase == corev1.PodSucceeded || s.Phase == corev1.PodFailed:
		return meshed("phase %s: nothing runs", s.Phase)
	case len(s.PodIPs) == 0:
		// ADD in progress, or not started: the plug-in decides it.
		return meshed("no pod IP yet: the sandbox is still being set up")
	}
	if v := podcheck.Check(p, cfg.Pods); !v.Redirect {
		return meshed("does not qualify: %s", v.Reason)
	}
	if cfg.SandboxDir == "" {
		return meshed("the plug-in keeps no ADD records (sandboxDir empty): cannot tell; not acted on")
	}
	sb := SandboxKey(e)
	rec, ok := newest(e, records)
	switch {
	case !ok:
		return Verdict{Unmeshed: true, Sandbox: sb,
			Reason: "qualifies for the mesh but the plug-in has no ADD record of it: its sandbox started before mesh-cni was in the CNI chain"}
	case rec.Decision != agentapi.DecisionRedirected:
		return Verdict{Unmeshed: true, Sandbox: sb,
			Reason: fmt.Sprintf("qualifies for the mesh now but the plug-in's ADD decided %s: %s", rec.Decision, rec.Reason)}
	}
	v := meshed("redirected by the plug-in's ADD (sandbox %s)", shortID(rec.ContainerID))
	v.Recorded, v.Sandbox = true, sb
	return v
}

// newest is the newest readable record of this pod: its UID, or, for a
// record without UID (the runtime passed no K8S_POD_UID), its namespace and
// name written after the pod was created (an earlier pod of the same name
// wrote its record before).
func newest(e *podcache.Entry, records []sandbox.Entry) (sandbox.Record, bool) {
	var rec sandbox.Record
	found := false
	for _, r := range records {
		if r.Err != nil || !belongs(e, &r.Record) {
			continue
		}
		if !found || r.Record.Time.After(rec.Time) {
			rec, found = r.Record, true
		}
	}
	return rec, found
}

func belongs(e *podcache.Entry, r *sandbox.Record) bool {
	if r.UID != "" {
		return r.UID == string(e.UID)
	}
	return r.Namespace == e.Namespace && r.Name == e.Name && !r.Time.Before(e.Status.Created)
}

// SandboxKey identifies the pod's current sandbox as the API shows it: a
// new sandbox of the same pod gets its network anew (and maybe new IPs).
func SandboxKey(e *podcache.Entry) string {
	ips := slices.Clone(e.Status.PodIPs)
	slices.Sort(ips)
	return fmt.Sprintf("%s/%s/%s", e.UID, e.Status.NetworkReadyAt.UTC().Format(time.RFC3339), strings.Join(ips, ","))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Stale are the readable records whose pod is gone from a synced cache and
// that are older than grace (a record written by an ADD whose pod the watch
// has not delivered yet is young: never stale). Unreadable records are not
// ours to remove.
func Stale(records []sandbox.Entry, pods []*podcache.Entry, now time.Time, grace time.Duration) []sandbox.Record {
	uids, names := map[string]bool{}, map[string]bool{}
	for _, p := range pods {
		uids[string(p.UID)] = true
		names[p.Namespace+"/"+p.Name] = true
	}
	var out []sandbox.Record
	for _, r := range records {
		rec := r.Record
		switch {
		case r.Err != nil, now.Sub(rec.Time) < grace:
		case rec.UID != "" && uids[rec.UID]:
		case rec.UID == "" && names[rec.Namespace+"/"+rec.Name]:
		default:
			out = append(out, rec)
		}
	}
	return out
}
