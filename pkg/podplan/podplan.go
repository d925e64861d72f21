// Package podplan decides, from a pod as the API serves it and the plug-in's
// config, whether the pod's netns gets the redirect and with which rules.
// The plug-in's ADD and CHECK and the node agent's in-place repair both
// call it, so a repaired pod holds exactly what ADD would have programmed.
// It is pure: no API, no netns, no logging.
package podplan

import (
	"fmt"
	"net/netip"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/podcheck"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// Plan is podcheck's verdict and, when it redirects, one ruleset per family.
type Plan struct {
	Verdict  podcheck.Verdict
	Rulesets []redirect.Ruleset
}

// Make applies podcheck to pd and builds the rulesets for fams. The only
// error is the pod's redirect annotations not resolving (Verdict is then
// set, Rulesets nil): nothing may be programmed for that pod.
func Make(pd *pod.Pod, cfg *config.Config, fams []redirect.Family) (Plan, error) {
	v := podcheck.Check(pd, cfg.Pods)
	if !v.Redirect {
		return Plan{Verdict: v}, nil
	}
	settings, err := cfg.Node.Resolve(pd.Metadata.Annotations, v.Proxy)
	if err != nil {
		return Plan{Verdict: v}, err
	}
	pl := Plan{Verdict: v}
	for _, fam := range fams {
		pl.Rulesets = append(pl.Rulesets, redirect.Build(settings, fam))
	}
	return pl, nil
}

// Families is what ADD programs for a pod with these addresses: IPv4
// always (the seed's rules), IPv6 too when the pod has an IPv6 address.
// ips are Kubernetes' status.podIPs values; one that does not parse is an
// error naming it.
func Families(ips []string) ([]redirect.Family, error) {
	fams := []redirect.Family{redirect.IPv4}
	v6 := false
	for i, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("podIPs[%d] %q is not an IP address: %w", i, s, err)
		}
		if a.Unmap().Is6() {
			v6 = true
		}
	}
	if v6 {
		fams = append(fams, redirect.IPv6)
	}
	return fams, nil
}
