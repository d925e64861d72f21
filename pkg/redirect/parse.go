package redirect

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// splitList splits a comma-separated annotation value. Spaces around items are
// tolerated (Istio's own examples use "a, b"), empty items are not.
func splitList(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("empty item in list %q", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseList parses a comma-separated list with parse, dropping duplicates;
// the first occurrence keeps its place (rule order follows the user's order).
func parseList[T comparable](s string, parse func(string) (T, error)) ([]T, error) {
	items, err := splitList(s)
	if err != nil {
		return nil, err
	}
	var out []T
	seen := map[T]bool{}
	for _, it := range items {
		v, err := parse(it)
		if err != nil {
			return nil, err
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out, nil
}

// ParsePorts parses "80,443"; "" means none.
func ParsePorts(s string) ([]uint16, error) { return parseList(s, parsePort) }

func parsePort(s string) (uint16, error) {
	// ParseUint alone would accept "+80" or "0x50"; ports are plain decimals.
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a decimal number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not in 1-65535", s)
	}
	return uint16(n), nil
}

// ParsePortSet parses "*", "" or a port list.
func ParsePortSet(s string) (PortSet, error) {
	if strings.TrimSpace(s) == "*" {
		return PortSet{All: true}, nil
	}
	ports, err := ParsePorts(s)
	return PortSet{Ports: ports}, err
}

// ParsePrefixes parses "10.0.0.0/8,fd00::/8"; a bare address is a host route.
// The prefix is masked so "10.1.2.3/8" becomes 10.0.0.0/8, as iptables would.
func ParsePrefixes(s string) ([]netip.Prefix, error) { return parseList(s, parsePrefix) }

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	// An IPv4-mapped IPv6 range would land in ip6tables and never match the
	// IPv4 traffic it names; ask for the plain IPv4 form instead.
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 range; write it as IPv4", s)
	}
	return p.Masked(), nil
}

// ParsePrefixSet parses "*", "" or a CIDR list.
func ParsePrefixSet(s string) (PrefixSet, error) {
	if strings.TrimSpace(s) == "*" {
		return PrefixSet{All: true}, nil
	}
	p, err := ParsePrefixes(s)
	return PrefixSet{Prefixes: p}, err
}

// ifaceName reports whether s is what the kernel accepts as an interface
// name (IFNAMSIZ-1 bytes, no '/', whitespace or ':'), further limited to
// characters that cannot carry iptables-restore or shell syntax into the
// rules, and not starting like an option. A loop, not a regexp: this runs in every plug-in start's init path.
func ifaceName(s string) bool {
	// A leading '-' would read as an option to anyone scanning the rule
	// ("-i -d ..."); the kernel allows it, no real pod needs it.
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." || s[0] == '-' {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.@-", c)
		if !ok {
			return false
		}
	}
	return true
}

// ParseInterfaces parses "eth1,net1".
func ParseInterfaces(s string) ([]string, error) { return parseList(s, parseInterface) }

func parseInterface(s string) (string, error) {
	if !ifaceName(s) {
		return "", fmt.Errorf("%q is not a valid interface name", s)
	}
	return s, nil
}
