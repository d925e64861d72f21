// Package redirect turns typed redirect settings into iptables rules as data.
//
// Everything the plug-in does to a pod's netns — apply, CHECK and cleanup — is
// derived from the Ruleset built here, so the three can never disagree.
package redirect

import "net/netip"

// Proxy ports of the sidecar itself. They are never redirected: capturing the
// proxy's own listeners would loop traffic back into it.
const (
	DefaultOutboundPort      uint16 = 15001 // the proxy's outbound capture listener
	DefaultInboundPort       uint16 = 15006 // the proxy's inbound capture listener
	DefaultInboundTunnelPort uint16 = 15008 // HBONE/mTLS tunnel, arrives already meant for the proxy
	DefaultDNSPort           uint16 = 15053 // the agent's DNS listener (UDP and TCP)
	DefaultProxyUID          uint32 = 1337
	DefaultProxyGID          uint32 = 1337
)

// TPROXY's defaults, Istio's: inbound packets are marked 1337 and routed
// by table 133 to local delivery; the proxy's own loopback traffic to the
// pod is marked 1338.
const (
	DefaultTProxyMark  uint32 = 1337
	DefaultTProxyTable uint32 = 133
	outboundMark       uint32 = 1338
)

// TProxy reports whether inbound is intercepted with TPROXY.
func (s Settings) TProxy() bool { return s.Mode == ModeTProxy }

// dnsPort is the port DNS capture takes to DefaultDNSPort.
const dnsPort uint16 = 53

// proxyInboundPorts are the sidecar's status (15020), health (15021) and
// Prometheus (15090) ports: kubelet probes and scrapes must reach them directly.
var proxyInboundPorts = []uint16{15020, 15021, 15090}

// PortSet is a list of TCP ports or the wildcard "*".
type PortSet struct {
	All   bool
	Ports []uint16
}

// Empty reports whether the set selects nothing.
func (p PortSet) Empty() bool { return !p.All && len(p.Ports) == 0 }

// PrefixSet is a list of CIDRs or the wildcard "*".
type PrefixSet struct {
	All      bool
	Prefixes []netip.Prefix
}

// Empty reports whether the set selects nothing.
func (p PrefixSet) Empty() bool { return !p.All && len(p.Prefixes) == 0 }

// Settings is what one pod's redirect looks like, fully resolved: node
// defaults overridden by the pod's annotations.
type Settings struct {
	OutboundPort      uint16
	InboundPort       uint16
	InboundTunnelPort uint16
	ProxyUID          uint32
	ProxyGID          uint32
	// CaptureDNS sends the app's DNS (UDP and TCP 53) to DNSPort.
	CaptureDNS bool
	DNSPort    uint16
	// RerouteInterfaces are VM (KubeVirt) interfaces whose traffic is
	// captured as outbound.
	RerouteInterfaces []string
	// Mode is ModeRedirect or ModeTProxy; TProxyMark and TProxyTable are
	// the packet mark and routing table TPROXY interception uses.
	Mode        string
	TProxyMark  uint32
	TProxyTable uint32

	IncludeInboundPorts     PortSet
	ExcludeInboundPorts     []uint16
	IncludeOutboundIPRanges PrefixSet
	ExcludeOutboundIPRanges []netip.Prefix
	IncludeOutboundPorts    []uint16
	ExcludeOutboundPorts    []uint16
	ExcludeInterfaces       []string
}
