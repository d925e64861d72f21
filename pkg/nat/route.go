package nat

import (
	"strconv"
	"strings"

	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// The TPROXY side of a pod's netns: every table in one read, and the
// policy routing, through the host's iptables-save and ip tools.
var (
	_ redirect.AllSaver = (*Netns)(nil)
	_ redirect.Router   = (*Netns)(nil)
)

// SaveAll implements redirect.AllSaver: iptables-save without -t.
func (n *Netns) SaveAll(fam redirect.Family) (string, error) {
	out, err := n.run(nil, n.tool(fam, "save"))
	return string(out), err
}

func famFlag(fam redirect.Family) string {
	if fam == redirect.IPv6 {
		return "-6"
	}
	return "-4"
}

func ruleArgs(r redirect.TProxyRoute) []string {
	return []string{"fwmark", strconv.FormatUint(uint64(r.Mark), 10), "lookup", strconv.FormatUint(uint64(r.Table), 10)}
}

func routeArgs(r redirect.TProxyRoute) []string {
	return []string{"local", "default", "dev", "lo", "table", strconv.FormatUint(uint64(r.Table), 10)}
}

// TProxyRoute implements redirect.Router.
func (n *Netns) TProxyRoute(fam redirect.Family, r redirect.TProxyRoute) (rule, route bool, err error) {
	out, err := n.run(nil, "ip", append([]string{famFlag(fam), "rule", "show"}, ruleArgs(r)...)...)
	if err != nil {
		return false, false, err
	}
	rule = strings.TrimSpace(string(out)) != ""
	out, err = n.run(nil, "ip", famFlag(fam), "route", "show", "table", strconv.FormatUint(uint64(r.Table), 10))
	if err != nil {
		// A table nothing was ever added to does not exist yet.
		if strings.Contains(err.Error(), "FIB table does not exist") {
			return rule, false, nil
		}
		return false, false, err
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "local" && f[1] == "default" && f[2] == "dev" && f[3] == "lo" {
			route = true
		}
	}
	return rule, route, nil
}

// AddTProxyRoute implements redirect.Router. ip rule accepts duplicates,
// so the rule is added only when missing.
func (n *Netns) AddTProxyRoute(fam redirect.Family, r redirect.TProxyRoute) error {
	rule, route, err := n.TProxyRoute(fam, r)
	if err != nil {
		return err
	}
	if !route {
		if _, err := n.run(nil, "ip", append([]string{famFlag(fam), "route", "add"}, routeArgs(r)...)...); err != nil {
			return err
		}
	}
	if !rule {
		if _, err := n.run(nil, "ip", append([]string{famFlag(fam), "rule", "add"}, ruleArgs(r)...)...); err != nil {
			return err
		}
	}
	return nil
}

// DelTProxyRoute implements redirect.Router: every copy of the rule (a
// foreign writer may have added one more), then the route.
func (n *Netns) DelTProxyRoute(fam redirect.Family, r redirect.TProxyRoute) error {
	for range 16 {
		rule, route, err := n.TProxyRoute(fam, r)
		if err != nil {
			return err
		}
		switch {
		case rule:
			if _, err := n.run(nil, "ip", append([]string{famFlag(fam), "rule", "del"}, ruleArgs(r)...)...); err != nil {
				return err
			}
		case route:
			if _, err := n.run(nil, "ip", append([]string{famFlag(fam), "route", "del"}, routeArgs(r)...)...); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}
