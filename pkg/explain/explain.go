package explain

import (
	"fmt"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/podcheck"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// Report is the answer for one pod (or one document that holds none).
type Report struct {
	Document  int                  `json:"document"`
	Namespace string               `json:"namespace,omitempty"`
	Name      string               `json:"name,omitempty"`
	Kind      string               `json:"kind"`
	Redirect  bool                 `json:"redirect"`
	Reason    string               `json:"reason"`
	Checks    []podcheck.Condition `json:"checks,omitempty"`
	Settings  []redirect.Setting   `json:"settings,omitempty"`
	Rules     *Rules               `json:"rules,omitempty"`
	// Skipped says why a document was not explained (it holds no pod).
	Skipped string `json:"skipped,omitempty"`
	// Error is why the document or pod was refused: unreadable, or an
	// annotation ADD would refuse (the same error, naming the annotation).
	Error string `json:"error,omitempty"`
}

// Rules is the iptables-restore text per family, as ADD would program it
// (a TPROXY pod's mangle table and policy route follow its nat table).
type Rules struct {
	IPv4 string `json:"ipv4"`
	IPv6 string `json:"ipv6"`
}

// Refused reports whether the document or pod was refused: explain then
// exits 1.
func (r Report) Refused() bool { return r.Error != "" }

// Explain runs ADD's decision and rule building for one source.
func Explain(src Source, cfg *config.Config) Report {
	r := Report{Document: src.Document, Namespace: src.Namespace, Name: src.Name, Kind: src.Kind}
	switch {
	case src.Err != nil:
		r.Error, r.Reason = src.Err.Error(), "refused: "+src.Err.Error()
		return r
	case src.Pod == nil:
		r.Skipped, r.Reason = src.Skipped, "skipped: "+src.Skipped
		return r
	}
	checks, v := podcheck.Evaluate(src.Pod, cfg.Pods)
	r.Checks, r.Reason = checks, v.Reason
	if !v.Redirect {
		return r
	}
	// As ADD: a bad annotation refuses the pod with the same error.
	s, err := cfg.Node.Resolve(src.Pod.Metadata.Annotations, v.Proxy)
	if err != nil {
		r.Error = fmt.Sprintf("pod %s/%s: %v; nothing would be programmed", src.Namespace, src.Name, err)
		r.Reason = "refused: " + r.Error
		return r
	}
	r.Redirect = true
	r.Settings = append(cfg.Node.Sources(src.Pod.Metadata.Annotations), proxySettings(v.Proxy, cfg.Node.Proxy)...)
	r.Rules = &Rules{IPv4: Restore(redirect.Build(s, redirect.IPv4)), IPv6: Restore(redirect.Build(s, redirect.IPv6))}
	return r
}

// proxySettings are the sidecar's identity and DNS capture, as podcheck read
// them from the pod (securityContext, environment) over the node default.
func proxySettings(p, node redirect.Proxy) []redirect.Setting {
	src := func(got, node, builtin uint32) string {
		switch {
		case got != node:
			return "pod (securityContext)"
		case node != builtin:
			return redirect.FromNodeConfig
		}
		return redirect.FromDefault
	}
	dns := redirect.Setting{Name: "captureDNS", Value: "false", Source: redirect.FromDefault}
	if p.CaptureDNS {
		dns = redirect.Setting{Name: "captureDNS", Value: "true", Source: "pod (" + podcheck.EnvDNSCapture + ")"}
	}
	return []redirect.Setting{
		{Name: "proxyUID", Value: fmt.Sprint(p.UID), Source: src(p.UID, node.UID, redirect.DefaultProxyUID)},
		{Name: "proxyGID", Value: fmt.Sprint(p.GID), Source: src(p.GID, node.GID, redirect.DefaultProxyGID)},
		dns,
	}
}

// Restore is a ruleset as iptables-restore reads it: the nat table, then
// (TPROXY) the mangle table and the policy route as a comment, which
// iptables-restore skips.
func Restore(rs redirect.Ruleset) string {
	out := redirect.Render(rs)
	if rs.Mangle != nil {
		out += redirect.Render(*rs.Mangle)
	}
	if rs.Route != nil {
		out += "# policy route: " + rs.Route.String() + "\n"
	}
	return out
}
