// Package redirecttest holds the one table of redirect cases that both the
// golden test (pkg/redirect) and the real-kernel test (test/netns) run.
package redirecttest

import "github.com/meshcni/mesh-cni/pkg/redirect"

// SeedAnnotations is the seed document's productpage pod: its cluster keeps
// 192.168.0.1 out of the mesh.
var SeedAnnotations = map[string]string{redirect.AnnoExcludeOutboundIPRanges: "192.168.0.1/32"}

// Case is one pod's annotations and the families it is rendered for.
type Case struct {
	Name        string
	Annotations map[string]string
	Proxy       redirect.Proxy
	Families    []redirect.Family
	// WantErr, when set, is a substring the resolve error must contain;
	// such a case must program nothing.
	WantErr string
}

var both = []redirect.Family{redirect.IPv4, redirect.IPv6}
var v4 = []redirect.Family{redirect.IPv4}
var defProxy = redirect.Proxy{UID: 1337, GID: 1337}
var dnsProxy = redirect.Proxy{UID: 1337, GID: 1337, CaptureDNS: true}

// Cases is the table. "seed" must render to the seed's restore input.
var Cases = []Case{
	{Name: "seed", Annotations: SeedAnnotations, Proxy: defProxy, Families: v4},
	{Name: "defaults", Proxy: defProxy, Families: both},
	{Name: "include-inbound-list", Proxy: defProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoIncludeInboundPorts: "9080,8080,15021"}},
	{Name: "no-inbound", Proxy: defProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoIncludeInboundPorts: ""}},
	{Name: "exclude-inbound", Proxy: defProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoExcludeInboundPorts: "9090, 22,9090"}},
	{Name: "include-ranges", Proxy: defProxy, Families: both, Annotations: map[string]string{
		redirect.AnnoIncludeOutboundIPRanges: "10.96.0.0/12,10.244.1.7,fd00:10:96::/112"}},
	{Name: "no-outbound-ranges", Proxy: defProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoIncludeOutboundIPRanges: "", redirect.AnnoIncludeOutboundPorts: "3306"}},
	{Name: "exclude-ranges-mixed", Proxy: defProxy, Families: both, Annotations: map[string]string{
		redirect.AnnoExcludeOutboundIPRanges: "169.254.169.254/32,10.1.2.3/8,fd00::/8"}},
	{Name: "outbound-ports", Proxy: defProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoExcludeOutboundPorts: "5432,6379", redirect.AnnoIncludeOutboundPorts: "8443"}},
	{Name: "exclude-interfaces", Proxy: defProxy, Families: both, Annotations: map[string]string{
		redirect.AnnoExcludeInterfaces: "net1,eth1"}},
	{Name: "custom-proxy-identity", Proxy: redirect.Proxy{UID: 2000, GID: 3000}, Families: v4},
	{Name: "interception-redirect", Proxy: defProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoInterceptionMode: "REDIRECT"}},
	// Istio: the annotation replaces the default (15020), it does not add to it.
	{Name: "exclude-outbound-none", Proxy: defProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoExcludeOutboundPorts: ""}},
	// Istio: a loopback range to capture drops the "other local processes
	// on lo are left alone" rules, in both families.
	{Name: "include-loopback", Proxy: defProxy, Families: both, Annotations: map[string]string{
		redirect.AnnoIncludeOutboundIPRanges: "127.0.0.0/8,10.96.0.0/12,fd00:10:96::/112"}},
	{Name: "include-loopback-v6", Proxy: defProxy, Families: both, Annotations: map[string]string{
		redirect.AnnoIncludeOutboundIPRanges: "::1/128"}},
	// ISTIO_META_DNS_CAPTURE: UDP and TCP 53 to 15053, the proxy's own excepted.
	{Name: "dns-capture", Proxy: dnsProxy, Families: both},
	{Name: "dns-capture-exclude-53", Proxy: dnsProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoExcludeOutboundPorts: "15020,53", redirect.AnnoIncludeOutboundIPRanges: "10.96.0.0/12"}},
	// KubeVirt: a VM's interfaces are captured as outbound, never inbound.
	{Name: "reroute-interfaces", Proxy: defProxy, Families: both, Annotations: map[string]string{
		redirect.AnnoRerouteVirtualInterfaces: "vnet0,k6t-eth0"}},
	{Name: "kubevirt-interfaces-ranges", Proxy: defProxy, Families: both, Annotations: map[string]string{
		redirect.AnnoKubevirtInterfaces: "vnet0", redirect.AnnoIncludeOutboundIPRanges: "10.96.0.0/12,fd00:10:96::/112"}},
	// TPROXY: inbound in the mangle table (and a policy route), outbound
	// still REDIRECT in nat.
	{Name: "tproxy", Proxy: defProxy, Families: both, Annotations: map[string]string{
		redirect.AnnoInterceptionMode: "TPROXY"}},
	{Name: "tproxy-inbound-list", Proxy: redirect.Proxy{UID: 2000, GID: 3000}, Families: v4, Annotations: map[string]string{
		redirect.AnnoInterceptionMode: "TPROXY", redirect.AnnoIncludeInboundPorts: "9080,15021", redirect.AnnoExcludeInterfaces: "net1"}},
	// The current annotation wins; the deprecated one is not even read.
	{Name: "reroute-wins-over-kubevirt", Proxy: defProxy, Families: v4, Annotations: map[string]string{
		redirect.AnnoRerouteVirtualInterfaces: "vnet0", redirect.AnnoKubevirtInterfaces: "not an interface!"}},

	{Name: "bad-port-range", WantErr: "traffic.sidecar.istio.io/excludeInboundPorts", Annotations: map[string]string{
		redirect.AnnoExcludeInboundPorts: "99999"}},
	{Name: "bad-port-zero", WantErr: "traffic.sidecar.istio.io/includeOutboundPorts", Annotations: map[string]string{
		redirect.AnnoIncludeOutboundPorts: "0"}},
	{Name: "bad-port-injection", WantErr: "traffic.sidecar.istio.io/includeInboundPorts", Annotations: map[string]string{
		redirect.AnnoIncludeInboundPorts: "80 -j ACCEPT"}},
	{Name: "bad-cidr-trailing", WantErr: "traffic.sidecar.istio.io/excludeOutboundIPRanges", Annotations: map[string]string{
		redirect.AnnoExcludeOutboundIPRanges: "10.0.0.0/8 extra"}},
	{Name: "bad-cidr-shell", WantErr: "traffic.sidecar.istio.io/includeOutboundIPRanges", Annotations: map[string]string{
		redirect.AnnoIncludeOutboundIPRanges: "10.0.0.0/8;reboot"}},
	{Name: "bad-cidr-mask", WantErr: "traffic.sidecar.istio.io/includeOutboundIPRanges", Annotations: map[string]string{
		redirect.AnnoIncludeOutboundIPRanges: "10.0.0.0/33"}},
	{Name: "bad-empty-item", WantErr: "traffic.sidecar.istio.io/excludeOutboundPorts", Annotations: map[string]string{
		redirect.AnnoExcludeOutboundPorts: "80,,81"}},
	{Name: "bad-interface", WantErr: "traffic.sidecar.istio.io/excludeInterfaces", Annotations: map[string]string{
		redirect.AnnoExcludeInterfaces: "eth0 -j DROP"}},
	{Name: "bad-interface-long", WantErr: "traffic.sidecar.istio.io/excludeInterfaces", Annotations: map[string]string{
		redirect.AnnoExcludeInterfaces: "averyveryverylongname0"}},
	{Name: "bad-mode", WantErr: "sidecar.istio.io/interceptionMode", Annotations: map[string]string{
		redirect.AnnoInterceptionMode: "redirect"}},
	// NONE pods are skipped by podcheck; resolving one anyway must refuse.
	{Name: "mode-none", WantErr: "asks for no redirect", Annotations: map[string]string{
		redirect.AnnoInterceptionMode: "NONE"}},
	{Name: "bad-reroute-interface", WantErr: "istio.io/reroute-virtual-interfaces", Annotations: map[string]string{
		redirect.AnnoRerouteVirtualInterfaces: "vnet0 -j ACCEPT"}},
	{Name: "bad-kubevirt-interface", WantErr: "traffic.sidecar.istio.io/kubevirtInterfaces", Annotations: map[string]string{
		redirect.AnnoKubevirtInterfaces: "vnet0,"}},
	{Name: "bad-mapped-v6", WantErr: "IPv4-mapped", Annotations: map[string]string{
		redirect.AnnoExcludeOutboundIPRanges: "::ffff:10.0.0.0/104"}},
}

// Render is a ruleset as its golden file holds it: the nat table's
// restore input, then, for TPROXY, the mangle table's and the route as a
// comment (iptables-restore skips it).
func Render(rs redirect.Ruleset) string {
	out := redirect.Render(rs)
	if rs.Mangle != nil {
		out += redirect.Render(*rs.Mangle)
	}
	if rs.Route != nil {
		out += "# " + rs.Route.String() + "\n"
	}
	return out
}

// Golden is the golden file name of one case and family, under pkg/redirect/testdata.
func Golden(c Case, f redirect.Family) string {
	if f == redirect.IPv6 {
		return c.Name + ".v6.rules"
	}
	return c.Name + ".v4.rules"
}
