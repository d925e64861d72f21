package inspect

import (
	"regexp"
	"strings"
	"sync"
)

// protoNames are the protocol numbers iptables-nft prints where
// iptables-legacy prints names; the seed's listing has the names.
var protoNames = map[string]string{"0": "all", "1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp", "132": "sctp"}

// ruleLine is "num pkts bytes target prot ...", the prot column captured;
// compiled on first use, so the plug-in's exec never pays for it.
var ruleLine = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(\s*\d+\s+\d+\s+\d+\s+\S+\s+)(\d+)(\s)`)
})

// ProtocolNames rewrites the protocol column of an iptables -L -v
// --line-numbers listing from numbers to names, keeping the columns.
func ProtocolNames(listing string) string {
	lines := strings.Split(listing, "\n")
	for i, l := range lines {
		m := ruleLine().FindStringSubmatchIndex(l)
		if m == nil {
			continue
		}
		num := l[m[4]:m[5]]
		name, ok := protoNames[num]
		if !ok {
			continue
		}
		// Pad or trim to keep the following columns where they were.
		field := name
		if pad := len(num) - len(name); pad > 0 {
			field += strings.Repeat(" ", pad)
		}
		rest := l[m[5]:]
		if extra := len(name) - len(num); extra > 0 {
			rest = strings.TrimPrefix(rest, strings.Repeat(" ", min(extra, countLeadingSpaces(rest)-1)))
		}
		lines[i] = l[:m[4]] + field + rest
	}
	return strings.Join(lines, "\n")
}

func countLeadingSpaces(s string) int {
	return len(s) - len(strings.TrimLeft(s, " "))
}
