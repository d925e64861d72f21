package redirect

import (
	"net/netip"
	"slices"
	"strconv"
)

// Family is an address family; each gets its own table and restore batch.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// The chains mesh-cni owns, in the order the seed's restore input declares them.
const (
	ChainInbound    = "ISTIO_INBOUND"
	ChainRedirect   = "ISTIO_REDIRECT"
	ChainInRedirect = "ISTIO_IN_REDIRECT"
	ChainOutput     = "ISTIO_OUTPUT"
)

// OwnChains are created, flushed and deleted by mesh-cni; nothing else
// in the nat table is touched except the jumps into them.
var OwnChains = []string{ChainInbound, ChainRedirect, ChainInRedirect, ChainOutput}

// Rule is one "-A Chain Args..." line of a table.
type Rule struct {
	Chain string
	Args  []string
}

// Ruleset is everything mesh-cni holds in one family's table: the nat
// table unless Table names another. A TPROXY ruleset (nat) carries the
// mangle table's rules and the policy route with it, so apply, CHECK and
// cleanup treat the three as one.
type Ruleset struct {
	Family Family
	Table  string // "" is nat
	Rules  []Rule
	// Mangle and Route are set in TPROXY mode only.
	Mangle *Ruleset
	Route  *TProxyRoute
}

// table is the name iptables knows the ruleset's table by.
func (rs Ruleset) table() string { return tableName(rs.Table) }

func tableName(t string) string {
	if t == "" {
		return TableNat
	}
	return t
}

// The tables mesh-cni writes.
const (
	TableNat    = "nat"
	TableMangle = "mangle"
)

// ownChains are the chains mesh-cni owns in a table.
func ownChains(table string) []string {
	if tableName(table) == TableMangle {
		return MangleChains
	}
	return OwnChains
}

// addr is the family-specific address used by the loopback rules.
type addr struct {
	loopback    string // the address the proxy's own loopback traffic must keep
	passthrough string // the source the proxy uses to hand inbound to the app
}

var addrs = map[Family]addr{
	IPv4: {loopback: "127.0.0.1/32", passthrough: "127.0.0.6/32"},
	IPv6: {loopback: "::1/128", passthrough: "::6/128"},
}

// Build turns settings into the rules of one family. The order is Istio's:
// the seed document shows it and operators compare against it.
func Build(s Settings, fam Family) Ruleset {
	b := builder{fam: fam}
	b.jumps(s)
	if !s.TProxy() {
		b.inbound(s)
	}
	b.add(ChainRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", port(s.OutboundPort))
	b.add(ChainInRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", port(s.InboundPort))
	b.output(s)
	rs := Ruleset{Family: fam, Rules: b.rules}
	if s.TProxy() {
		// Inbound is intercepted in the mangle table instead; outbound
		// stays REDIRECT in nat, as in Istio.
		mangle := buildMangle(s, fam)
		rs.Mangle = &mangle
		rs.Route = &TProxyRoute{Mark: s.TProxyMark, Table: s.TProxyTable}
	}
	return rs
}

type builder struct {
	fam   Family
	rules []Rule
}

func (b *builder) add(chain string, args ...string) {
	b.rules = append(b.rules, Rule{Chain: chain, Args: args})
}

func (b *builder) jumps(s Settings) {
	b.rerouteJumps(s)
	if !s.IncludeInboundPorts.Empty() && !s.TProxy() {
		b.add("PREROUTING", "-p", "tcp", "-j", ChainInbound)
	}
	b.add("OUTPUT", "-p", "tcp", "-j", ChainOutput)
	if s.CaptureDNS {
		// DNS over UDP passes ISTIO_OUTPUT too: the proxy's own queries are
		// let through by the owner rules there, the app's are redirected.
		b.add("OUTPUT", "-p", "udp", "--dport", port(dnsPort), "-j", ChainOutput)
	}
}

// rerouteJumps send TCP arriving on a VM's virtual interface (KubeVirt) to
// the outbound listener, as traffic the pod itself sends: the VM behind it
// is the workload. Only the ranges outbound capture covers are rerouted.
func (b *builder) rerouteJumps(s Settings) {
	for _, iface := range s.RerouteInterfaces {
		switch inc := s.IncludeOutboundIPRanges; {
		case inc.All:
			b.add("PREROUTING", "-i", iface, "-j", ChainRedirect)
		default:
			for _, p := range b.family(inc.Prefixes) {
				b.add("PREROUTING", "-d", p.String(), "-i", iface, "-j", ChainRedirect) // iptables-save order
			}
		}
	}
}

func (b *builder) inbound(s Settings) {
	if s.IncludeInboundPorts.Empty() {
		return
	}
	// A virtual interface's traffic is the VM's own outbound, never inbound.
	for _, iface := range union(s.ExcludeInterfaces, s.RerouteInterfaces) {
		b.add(ChainInbound, "-i", iface, "-j", "RETURN")
	}
	b.add(ChainInbound, "-p", "tcp", "--dport", port(s.InboundTunnelPort), "-j", "RETURN")
	if s.IncludeInboundPorts.All {
		for _, p := range union(s.ExcludeInboundPorts, proxyInboundPorts) {
			b.add(ChainInbound, "-p", "tcp", "--dport", port(p), "-j", "RETURN")
		}
		b.add(ChainInbound, "-p", "tcp", "-j", ChainInRedirect)
		return
	}
	for _, p := range s.IncludeInboundPorts.Ports {
		if !contains(proxyInboundPorts, p) && p != s.InboundTunnelPort {
			b.add(ChainInbound, "-p", "tcp", "--dport", port(p), "-j", ChainInRedirect)
		}
	}
}

func (b *builder) output(s Settings) {
	a := addrs[b.fam]
	for _, iface := range s.ExcludeInterfaces {
		b.add(ChainOutput, "-o", iface, "-j", "RETURN")
	}
	for _, p := range s.ExcludeOutboundPorts {
		b.add(ChainOutput, "-p", "tcp", "--dport", port(p), "-j", "RETURN")
		if s.CaptureDNS && p == dnsPort {
			b.add(ChainOutput, "-p", "udp", "--dport", port(p), "-j", "RETURN")
		}
	}
	// Inbound traffic the proxy hands to the app comes from 127.0.0.6 on lo.
	b.add(ChainOutput, "-s", a.passthrough, "-o", "lo", "-j", "RETURN")
	b.owners(s)
	if s.CaptureDNS {
		// After the owner rules, so the proxy's own queries reach the
		// resolver; before the loopback and range exclusions, so a local
		// resolver or an excluded one is answered by the proxy, as in Istio.
		b.add(ChainOutput, "-p", "tcp", "--dport", port(dnsPort), "-j", "REDIRECT", "--to-ports", port(s.DNSPort))
		b.add(ChainOutput, "-p", "udp", "--dport", port(dnsPort), "-j", "REDIRECT", "--to-ports", port(s.DNSPort))
	}
	b.add(ChainOutput, "-d", a.loopback, "-j", "RETURN")
	for _, p := range b.family(s.ExcludeOutboundIPRanges) {
		b.add(ChainOutput, "-d", p.String(), "-j", "RETURN")
	}
	for _, p := range s.IncludeOutboundPorts {
		b.add(ChainOutput, "-p", "tcp", "--dport", port(p), "-j", ChainRedirect)
	}
	switch inc := s.IncludeOutboundIPRanges; {
	case inc.All:
		b.add(ChainOutput, "-j", ChainRedirect)
	case len(inc.Prefixes) > 0:
		for _, p := range b.family(inc.Prefixes) {
			b.add(ChainOutput, "-d", p.String(), "-j", ChainRedirect)
		}
		// Only the listed ranges are captured; the rest leaves directly.
		b.add(ChainOutput, "-j", "RETURN")
	}
}

// owners are the rules keyed on the proxy's UID, then its GID.
func (b *builder) owners(s Settings) {
	a := addrs[b.fam]
	// A loopback range the pod asks to capture: other local processes'
	// traffic on lo is no longer left alone wholesale.
	keepLocal := !hasLoopback(s.IncludeOutboundIPRanges.Prefixes)
	for _, owner := range []struct{ flag, id string }{
		{"--uid-owner", strconv.FormatUint(uint64(s.ProxyUID), 10)},
		{"--gid-owner", strconv.FormatUint(uint64(s.ProxyGID), 10)},
	} {
		// The proxy calling its own pod through a non-loopback address goes
		// back through inbound capture; other local processes on lo are left
		// alone; everything else the proxy sends is already proxied. With
		// DNS capture, TCP 53 on lo is the exception (Istio: a resolver on
		// localhost is still answered by the proxy; the proxy's own query
		// to it is not sent inbound).
		inRedirect := []string{"!", "-d", a.loopback, "-o", "lo"}
		local := []string{"-o", "lo"}
		if s.CaptureDNS {
			if owner.flag == "--uid-owner" {
				inRedirect = append(inRedirect, "-p", "tcp", "!", "--dport", port(dnsPort))
			}
			local = append(local, "-p", "tcp", "!", "--dport", port(dnsPort))
		}
		b.add(ChainOutput, append(inRedirect, "-m", "owner", owner.flag, owner.id, "-j", ChainInRedirect)...)
		if keepLocal {
			b.add(ChainOutput, append(local, "-m", "owner", "!", owner.flag, owner.id, "-j", "RETURN")...)
		}
		b.add(ChainOutput, "-m", "owner", owner.flag, owner.id, "-j", "RETURN")
	}
}

// hasLoopback reports whether any prefix (of either family, as Istio
// checks) is a loopback range.
func hasLoopback(ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Addr().IsLoopback() {
			return true
		}
	}
	return false
}

// family keeps the prefixes of this builder's address family.
func (b *builder) family(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if (b.fam == IPv6) == p.Addr().Is6() {
			out = append(out, p)
		}
	}
	return out
}

func port(p uint16) string { return strconv.FormatUint(uint64(p), 10) }

func contains[T comparable](ps []T, p T) bool { return slices.Contains(ps, p) }

// union keeps a's order, then b's items not already in a.
func union[T comparable](a, b []T) []T {
	out := append([]T(nil), a...)
	for _, p := range b {
		if !contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
