// Package inspect compares what the kernel holds in a pod's netns with what
// ADD would program for the pod as it is now, through the plug-in's own
// decision (podcheck) and rules (redirect.Build, redirect.Verify), and says
// so in one word: OK, DRIFT, NOT-REDIRECTED, UNMESHED or NETNS-GONE.
package inspect

import (
	"fmt"
	"strings"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/podcheck"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// Status is inspect's answer for one pod.
type Status string

const (
	OK            Status = "OK"             // the rules are exactly what ADD programs
	Drift         Status = "DRIFT"          // some rules differ (the diff names each)
	NotRedirected Status = "NOT-REDIRECTED" // by decision; the reason says why
	Unmeshed      Status = "UNMESHED"       // qualifies, yet none of our rules: the zero-trust hole
	NetnsGone     Status = "NETNS-GONE"     // the recorded netns is no longer there
	Unknown       Status = "UNKNOWN"        // no sandbox of the pod on this node
	Failed        Status = "ERROR"          // could not be inspected (tables unreadable, pod unreadable)
)

// Exit codes, as issue 8 gives them; 5 is "could not inspect".
var exitCodes = map[Status]int{OK: 0, Drift: 1, Unknown: 2, NetnsGone: 2, NotRedirected: 3, Unmeshed: 4, Failed: 5}

// Exit is the process exit code of a single-pod inspect.
func (s Status) Exit() int { return exitCodes[s] }

// Result is one pod's answer.
type Result struct {
	Namespace   string   `json:"namespace"`
	Name        string   `json:"name"`
	ContainerID string   `json:"containerID,omitempty"`
	Netns       string   `json:"netns,omitempty"`
	Status      Status   `json:"status"`
	Reason      string   `json:"reason"`
	Diff        []string `json:"diff,omitempty"`
	// Tables is the nat table per family ("ipv4", "ipv6") as iptables -L
	// lists it.
	Tables map[string]string `json:"tables,omitempty"`
}

// Tables is a pod netns's tables: what Verify reads, and the listing.
type Tables interface {
	redirect.Tables
	List(fam redirect.Family) (string, error)
}

// Pod inspects one recorded sandbox. p is the pod as the API (or the
// agent's cache) has it now; netnsErr is why the netns cannot be entered
// (nil when it can).
func Pod(rec sandbox.Record, p *pod.Pod, cfg *config.Config, t Tables, netnsErr error) Result {
	r := Result{Namespace: rec.Namespace, Name: rec.Name, ContainerID: rec.ContainerID, Netns: rec.Netns}
	if netnsErr != nil {
		r.Status, r.Reason = NetnsGone, fmt.Sprintf("netns %s: %v (a stale record: the sandbox is gone)", rec.Netns, netnsErr)
		return r
	}
	fams := families(rec)
	r.Tables = listings(t, fams)
	v := podcheck.Check(p, cfg.Pods)
	if !v.Redirect {
		r.Status, r.Reason = NotRedirected, v.Reason
		if held := holding(t, fams); len(held) > 0 {
			r.Status, r.Reason = Drift, "not redirected ("+v.Reason+") yet the netns holds mesh rules"
			r.Diff = held
		}
		return r
	}
	s, err := cfg.Node.Resolve(p.Metadata.Annotations, v.Proxy)
	if err != nil {
		r.Status, r.Reason = NotRedirected, fmt.Sprintf("ADD refuses the pod: %v", err)
		return r
	}
	var missing int
	for _, fam := range fams {
		rs := redirect.Build(s, fam)
		cur, err := read(t, fam)
		if err != nil {
			r.Status, r.Reason = Failed, err.Error()
			return r
		}
		if !holdsAny(cur) {
			missing++
			r.Diff = append(r.Diff, fmt.Sprintf("%s: none of the mesh chains (%s)", fam, strings.Join(redirect.OwnChains, ", ")))
			continue
		}
		if err := redirect.Verify(t, rs); err != nil {
			r.Diff = append(r.Diff, strings.Split(err.Error(), "\n")...)
		}
	}
	switch {
	case missing == len(fams):
		r.Status, r.Reason = Unmeshed, "the pod qualifies ("+v.Reason+") but its netns holds none of the mesh rules: its traffic bypasses the sidecar"
	case len(r.Diff) > 0:
		r.Status, r.Reason = Drift, "the netns's rules differ from what ADD programs for this pod now"
	default:
		r.Status, r.Reason = OK, "the netns holds exactly the rules ADD programs: "+v.Reason
	}
	return r
}

func families(rec sandbox.Record) []redirect.Family {
	var out []redirect.Family
	for _, f := range rec.Families {
		switch f {
		case 4:
			out = append(out, redirect.IPv4)
		case 6:
			out = append(out, redirect.IPv6)
		}
	}
	if len(out) == 0 {
		return []redirect.Family{redirect.IPv4}
	}
	return out
}

func read(t Tables, fam redirect.Family) (redirect.Table, error) {
	text, err := t.Save(fam)
	if err != nil {
		return redirect.Table{}, fmt.Errorf("%s nat table: reading: %w", fam, err)
	}
	cur, err := redirect.ParseSave(text)
	if err != nil {
		return redirect.Table{}, fmt.Errorf("%s nat table: %w", fam, err)
	}
	return cur, nil
}

func holdsAny(cur redirect.Table) bool {
	for _, c := range redirect.OwnChains {
		if cur.Has(c) {
			return true
		}
	}
	return false
}

// holding names the mesh chains a netns holds that it should not.
func holding(t Tables, fams []redirect.Family) []string {
	var out []string
	for _, fam := range fams {
		cur, err := read(t, fam)
		if err != nil {
			continue
		}
		for _, c := range redirect.OwnChains {
			if cur.Has(c) {
				out = append(out, fmt.Sprintf("%s: unexpected chain %s", fam, c))
			}
		}
	}
	return out
}

func listings(t Tables, fams []redirect.Family) map[string]string {
	out := map[string]string{}
	for _, fam := range fams {
		key := "ipv4"
		if fam == redirect.IPv6 {
			key = "ipv6"
		}
		text, err := t.List(fam)
		if err != nil {
			text = "(could not list: " + err.Error() + ")\n"
		}
		out[key] = ProtocolNames(text)
	}
	return out
}
