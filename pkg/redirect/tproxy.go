package redirect

import "fmt"

// TPROXY interception (sidecar.istio.io/interceptionMode: TPROXY), Istio's
// layout: inbound TCP is marked and handed, destination untouched, to the
// proxy's transparent listener on the inbound port by the mangle table's
// TPROXY target; a policy route sends marked packets to local delivery.
// Outbound stays REDIRECT in the nat table.

// The mangle chains mesh-cni owns in TPROXY mode. ISTIO_INBOUND and
// ISTIO_OUTPUT share their names with nat chains: tables have their own
// chain namespaces.
const (
	ChainDivert = "ISTIO_DIVERT"
	ChainTProxy = "ISTIO_TPROXY"
)

// MangleChains are created, flushed and deleted by mesh-cni in the mangle
// table; as in nat, the built-in chains hold only jumps into them, so
// CHECK and cleanup find every rule of ours. (Istio writes its CONNMARK and
// MARK rules straight into PREROUTING/OUTPUT; here they open our chains,
// which decides every packet the same way.)
var MangleChains = []string{ChainInbound, ChainDivert, ChainTProxy, ChainOutput}

// TProxyRoute is the policy routing TPROXY needs in each family: packets
// carrying Mark are looked up in Table, which delivers everything locally
// ("ip rule add fwmark MARK lookup TABLE", "ip route add local default dev
// lo table TABLE").
type TProxyRoute struct {
	Mark, Table uint32
}

func (r TProxyRoute) String() string {
	return fmt.Sprintf("ip rule fwmark %d lookup %d + local default dev lo table %d", r.Mark, r.Table, r.Table)
}

// Router is implemented by Tables that can also program the pod's policy
// routing; TPROXY rulesets need it.
type Router interface {
	// TProxyRoute reports which of the fwmark rule and the local route exist.
	TProxyRoute(fam Family, r TProxyRoute) (rule, route bool, err error)
	// AddTProxyRoute adds the parts that are missing (never a duplicate rule).
	AddTProxyRoute(fam Family, r TProxyRoute) error
	// DelTProxyRoute removes the parts that are present.
	DelTProxyRoute(fam Family, r TProxyRoute) error
}

// AllSaver is implemented by Tables that read every table in one call
// (iptables-save without -t): cleanup and CHECK then see nat and mangle
// for the price of one read.
type AllSaver interface {
	SaveAll(fam Family) (string, error)
}

// hex is how iptables-save prints a mark.
func hex(v uint32) string { return fmt.Sprintf("0x%x", v) }

// buildMangle is the mangle part of a TPROXY ruleset. Rules are written as
// iptables-save prints them (marks in hex, CONNMARK's masks spelled out),
// so what CHECK reads back compares equal.
func buildMangle(s Settings, fam Family) Ruleset {
	a := addrs[fam]
	mark, full := hex(s.TProxyMark), "/0xffffffff"
	out := hex(outboundMark)
	b := builder{fam: fam}
	if !s.IncludeInboundPorts.Empty() {
		b.add("PREROUTING", "-p", "tcp", "-j", ChainInbound)
	}
	b.add("OUTPUT", "-p", "tcp", "-j", ChainOutput)

	if !s.IncludeInboundPorts.Empty() {
		for _, iface := range union(s.ExcludeInterfaces, s.RerouteInterfaces) {
			b.add(ChainInbound, "-i", iface, "-j", "RETURN")
		}
		// The mark Envoy's original_src sets becomes the connection's, so
		// replies to it are routed back to the proxy (restored in OUTPUT).
		b.add(ChainInbound, "-p", "tcp", "-m", "mark", "--mark", mark, "-j", "CONNMARK", "--save-mark", "--nfmask", "0xffffffff", "--ctmask", "0xffffffff")
		// Already diverted: never intercept twice.
		b.add(ChainInbound, "-p", "tcp", "-m", "mark", "--mark", mark, "-j", "RETURN")
		// The proxy handing inbound to the app, from 127.0.0.6 on lo.
		b.add(ChainInbound, "-s", a.passthrough, "-i", "lo", "-p", "tcp", "-j", "RETURN")
		// Local traffic on lo, unless the proxy sent it to the pod (1338).
		b.add(ChainInbound, "-i", "lo", "-p", "tcp", "-m", "mark", "!", "--mark", out, "-j", "RETURN")
		b.add(ChainInbound, "-p", "tcp", "--dport", port(s.InboundTunnelPort), "-j", "RETURN")
		if s.IncludeInboundPorts.All {
			for _, p := range union(s.ExcludeInboundPorts, proxyInboundPorts) {
				b.add(ChainInbound, "-p", "tcp", "--dport", port(p), "-j", "RETURN")
			}
			b.add(ChainInbound, "-p", "tcp", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", ChainDivert)
			b.add(ChainInbound, "-p", "tcp", "-j", ChainTProxy)
		} else {
			for _, p := range s.IncludeInboundPorts.Ports {
				if contains(proxyInboundPorts, p) || p == s.InboundTunnelPort {
					continue
				}
				b.add(ChainInbound, "-p", "tcp", "--dport", port(p), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", ChainDivert)
				b.add(ChainInbound, "-p", "tcp", "--dport", port(p), "-j", ChainTProxy)
			}
		}
		b.add(ChainDivert, "-j", "MARK", "--set-xmark", mark+full)
		b.add(ChainDivert, "-j", "ACCEPT")
		onIP := "0.0.0.0"
		if fam == IPv6 {
			onIP = "::"
		}
		b.add(ChainTProxy, "!", "-d", a.loopback, "-p", "tcp", "-j", "TPROXY",
			"--on-port", port(s.InboundPort), "--on-ip", onIP, "--tproxy-mark", mark+full)
	}

	for _, iface := range s.ExcludeInterfaces {
		b.add(ChainOutput, "-o", iface, "-j", "RETURN")
	}
	b.add(ChainOutput, "-o", "lo", "-p", "tcp", "-m", "mark", "--mark", mark, "-j", "RETURN")
	for _, owner := range []struct{ flag, id string }{
		{"--uid-owner", fmt.Sprint(s.ProxyUID)},
		{"--gid-owner", fmt.Sprint(s.ProxyGID)},
	} {
		// The proxy calling its own pod: marked so inbound interception
		// takes it (see the lo rule of ISTIO_INBOUND).
		b.add(ChainOutput, "!", "-d", a.loopback, "-o", "lo", "-p", "tcp", "-m", "owner", owner.flag, owner.id,
			"-j", "MARK", "--set-xmark", out+full)
	}
	b.add(ChainOutput, "-p", "tcp", "-m", "connmark", "--mark", mark, "-j", "CONNMARK", "--restore-mark", "--nfmask", "0xffffffff", "--ctmask", "0xffffffff")
	return Ruleset{Family: fam, Table: TableMangle, Rules: b.rules}
}
