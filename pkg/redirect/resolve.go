package redirect

import (
	"fmt"
	"strings"
)

// The pod annotations that override the node defaults, named as Istio names
// them so pods written for istio-init keep their meaning.
const (
	AnnoIncludeInboundPorts     = "traffic.sidecar.istio.io/includeInboundPorts"
	AnnoExcludeInboundPorts     = "traffic.sidecar.istio.io/excludeInboundPorts"
	AnnoIncludeOutboundIPRanges = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	AnnoExcludeOutboundIPRanges = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	AnnoIncludeOutboundPorts    = "traffic.sidecar.istio.io/includeOutboundPorts"
	AnnoExcludeOutboundPorts    = "traffic.sidecar.istio.io/excludeOutboundPorts"
	AnnoExcludeInterfaces       = "traffic.sidecar.istio.io/excludeInterfaces"
	AnnoInterceptionMode        = "sidecar.istio.io/interceptionMode"
	// AnnoRerouteVirtualInterfaces names a VM's interfaces (KubeVirt) whose
	// traffic is captured as outbound; AnnoKubevirtInterfaces is its
	// deprecated spelling, read only when the new one is absent (as Istio).
	AnnoRerouteVirtualInterfaces = "istio.io/reroute-virtual-interfaces"
	AnnoKubevirtInterfaces       = "traffic.sidecar.istio.io/kubevirtInterfaces"
)

// Interception modes. NONE asks for no redirect at all: pods that carry it
// are left alone before any rule is resolved (pkg/podcheck).
const (
	ModeRedirect = "REDIRECT"
	ModeTProxy   = "TPROXY"
	ModeNone     = "NONE"
)

// Lists is the textual form of the list settings, as node config and pod
// annotations both write them ("*", "" or comma-separated).
type Lists struct {
	IncludeInboundPorts     string `json:"includeInboundPorts"`
	ExcludeInboundPorts     string `json:"excludeInboundPorts"`
	IncludeOutboundIPRanges string `json:"includeOutboundIPRanges"`
	ExcludeOutboundIPRanges string `json:"excludeOutboundIPRanges"`
	IncludeOutboundPorts    string `json:"includeOutboundPorts"`
	ExcludeOutboundPorts    string `json:"excludeOutboundPorts"`
	ExcludeInterfaces       string `json:"excludeInterfaces"`
}

// DefaultLists are the node defaults that, with no annotation, reproduce the
// rules istio-init writes (ssh stays reachable, everything else is captured).
// 15020, the proxy's merged status/metrics port, is the default of the
// outbound exclusion, not a fixed part of it: in Istio a pod's
// excludeOutboundPorts replaces it.
var DefaultLists = Lists{
	IncludeInboundPorts:     "*",
	ExcludeInboundPorts:     "22",
	IncludeOutboundIPRanges: "*",
	ExcludeOutboundPorts:    "15020",
}

// field binds one list setting to its annotation and its parser.
type field struct {
	anno  string
	text  func(*Lists) *string
	apply func(*Settings, string) error
}

var fields = []field{
	{AnnoIncludeInboundPorts, func(l *Lists) *string { return &l.IncludeInboundPorts }, func(s *Settings, v string) (err error) {
		s.IncludeInboundPorts, err = ParsePortSet(v)
		return
	}},
	{AnnoExcludeInboundPorts, func(l *Lists) *string { return &l.ExcludeInboundPorts }, func(s *Settings, v string) (err error) {
		s.ExcludeInboundPorts, err = ParsePorts(v)
		return
	}},
	{AnnoIncludeOutboundIPRanges, func(l *Lists) *string { return &l.IncludeOutboundIPRanges }, func(s *Settings, v string) (err error) {
		s.IncludeOutboundIPRanges, err = ParsePrefixSet(v)
		return
	}},
	{AnnoExcludeOutboundIPRanges, func(l *Lists) *string { return &l.ExcludeOutboundIPRanges }, func(s *Settings, v string) (err error) {
		s.ExcludeOutboundIPRanges, err = ParsePrefixes(v)
		return
	}},
	{AnnoIncludeOutboundPorts, func(l *Lists) *string { return &l.IncludeOutboundPorts }, func(s *Settings, v string) (err error) {
		s.IncludeOutboundPorts, err = ParsePorts(v)
		return
	}},
	{AnnoExcludeOutboundPorts, func(l *Lists) *string { return &l.ExcludeOutboundPorts }, func(s *Settings, v string) (err error) {
		s.ExcludeOutboundPorts, err = ParsePorts(v)
		return
	}},
	{AnnoExcludeInterfaces, func(l *Lists) *string { return &l.ExcludeInterfaces }, func(s *Settings, v string) (err error) {
		s.ExcludeInterfaces, err = ParseInterfaces(v)
		return
	}},
}

// Proxy is the sidecar as the pod describes it: the identity whose own
// traffic is left alone, and what its agent serves (DNS on DefaultDNSPort
// when ISTIO_META_DNS_CAPTURE is set).
type Proxy struct {
	UID, GID   uint32
	CaptureDNS bool
}

// Node is the node-level default, validated once when the config is loaded.
type Node struct {
	OutboundPort      uint16
	InboundPort       uint16
	InboundTunnelPort uint16
	Proxy             Proxy
	Lists             Lists
}

// DefaultNode is the node default with nothing configured.
func DefaultNode() Node {
	return Node{
		OutboundPort:      DefaultOutboundPort,
		InboundPort:       DefaultInboundPort,
		InboundTunnelPort: DefaultInboundTunnelPort,
		Proxy:             Proxy{UID: DefaultProxyUID, GID: DefaultProxyGID},
		Lists:             DefaultLists,
	}
}

// Validate parses the node's list defaults; the error names the config key.
func (n Node) Validate() error {
	_, err := n.resolve(nil, n.Proxy, "redirect.")
	return err
}

// Resolve applies a pod's annotations on top of the node defaults. proxy is
// the identity the sidecar runs as (its securityContext, else the default).
// Every error names the annotation that caused it.
func (n Node) Resolve(annotations map[string]string, proxy Proxy) (Settings, error) {
	mode := ModeRedirect
	if m, ok := annotations[AnnoInterceptionMode]; ok {
		switch strings.TrimSpace(m) {
		case "", ModeRedirect:
		case ModeTProxy:
			mode = ModeTProxy
		case ModeNone:
			return Settings{}, fmt.Errorf("annotation %s=%q: the pod asks for no redirect; it must not be programmed", AnnoInterceptionMode, m)
		default:
			return Settings{}, fmt.Errorf("annotation %s=%q: unknown interception mode (want REDIRECT, TPROXY or NONE)", AnnoInterceptionMode, m)
		}
	}
	s, err := n.resolve(annotations, proxy, "")
	if err != nil {
		return Settings{}, err
	}
	s.Mode, s.TProxyMark, s.TProxyTable = mode, DefaultTProxyMark, DefaultTProxyTable
	if s.RerouteInterfaces, err = rerouteInterfaces(annotations); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// rerouteInterfaces reads the VM interfaces, the current annotation first.
func rerouteInterfaces(annotations map[string]string) ([]string, error) {
	for _, key := range []string{AnnoRerouteVirtualInterfaces, AnnoKubevirtInterfaces} {
		if v, ok := annotations[key]; ok {
			ifaces, err := ParseInterfaces(v)
			if err != nil {
				return nil, fmt.Errorf("annotation %s=%q: %w", key, v, err)
			}
			return ifaces, nil
		}
	}
	return nil, nil
}

func (n Node) resolve(annotations map[string]string, proxy Proxy, keyPrefix string) (Settings, error) {
	s := Settings{
		OutboundPort:      n.OutboundPort,
		InboundPort:       n.InboundPort,
		InboundTunnelPort: n.InboundTunnelPort,
		ProxyUID:          proxy.UID,
		ProxyGID:          proxy.GID,
		CaptureDNS:        proxy.CaptureDNS,
		DNSPort:           DefaultDNSPort,
	}
	lists := n.Lists
	for _, f := range fields {
		value, from := *f.text(&lists), "node config "+keyPrefix+jsonName(f.anno)
		if v, ok := annotations[f.anno]; ok {
			value, from = v, "annotation "+f.anno
		}
		if err := f.apply(&s, value); err != nil {
			return Settings{}, fmt.Errorf("%s=%q: %w", from, value, err)
		}
	}
	return s, nil
}

// jsonName maps an annotation to the node config key of the same meaning.
func jsonName(anno string) string { return anno[strings.LastIndex(anno, "/")+1:] }
