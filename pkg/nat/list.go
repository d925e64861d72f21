package nat

import "github.com/meshcni/mesh-cni/pkg/redirect"

// List is the nat table as the seed's check lists it inside the pod's
// netns: iptables -t nat -L -n -v --line-numbers -x. It only reads.
func (n *Netns) List(fam redirect.Family) (string, error) {
	base := "iptables"
	if fam == redirect.IPv6 {
		base = "ip6tables"
	}
	out, err := n.run(nil, base+"-"+string(n.Backend), "-w", "5", "-t", "nat", "-L", "-n", "-v", "--line-numbers", "-x")
	return string(out), err
}
