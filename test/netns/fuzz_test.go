package netns

import (
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

var fuzzFields = []string{
	redirect.AnnoIncludeInboundPorts, redirect.AnnoExcludeInboundPorts,
	redirect.AnnoIncludeOutboundIPRanges, redirect.AnnoExcludeOutboundIPRanges,
	redirect.AnnoIncludeOutboundPorts, redirect.AnnoExcludeOutboundPorts,
	redirect.AnnoExcludeInterfaces,
}

// FuzzKernelApplyVerify is the property behind ADD and CHECK, in the
// kernel: for any accepted annotation set, the rendered rules are accepted
// by iptables-restore, and CHECK (Verify) agrees right after ADD (Apply) —
// on a netns holding the previous input's rules (a re-ADD with changed
// settings) and on a clean one. One netns per fuzz process, per backend.
func FuzzKernelApplyVerify(f *testing.F) {
	for _, c := range redirecttest.Cases {
		args := make([]string, len(fuzzFields))
		for j, k := range fuzzFields {
			args[j] = c.Annotations[k]
		}
		f.Add(args[0], args[1], args[2], args[3], args[4], args[5], args[6], c.Name == "seed")
	}
	for _, a := range awkwardAnnotations {
		args := make([]string, len(fuzzFields))
		for j, k := range fuzzFields {
			args[j] = a[k]
		}
		f.Add(args[0], args[1], args[2], args[3], args[4], args[5], args[6], true)
		f.Add(args[0], args[1], args[2], args[3], args[4], args[5], args[6], false)
	}
	netns := map[nat.Backend]*cnitest.Netns{}
	f.Cleanup(func() {
		for _, n := range netns {
			n.Delete()
		}
	})
	node := redirect.DefaultNode()
	f.Fuzz(func(t *testing.T, a0, a1, a2, a3, a4, a5, a6 string, legacy bool) {
		annotations := map[string]string{}
		for i, v := range []string{a0, a1, a2, a3, a4, a5, a6} {
			if v != "" {
				annotations[fuzzFields[i]] = v
			}
		}
		s, err := node.Resolve(annotations, redirect.Proxy{UID: 1337, GID: 1337})
		if err != nil {
			return // rejected: the plug-in programs nothing (pkg/plugin tests)
		}
		b := nat.NFT
		if legacy {
			b = nat.Legacy
		}
		if netns[b] == nil {
			n, err := cnitest.NewNetns("mcni-fuzz")
			if err != nil {
				t.Fatal(err)
			}
			netns[b] = n
		}
		tb := tablesFor(netns[b], b)
		for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
			rs := redirect.Build(s, fam)
			// Over whatever the previous input left: a re-ADD.
			if err := redirect.Apply(tb, rs); err != nil {
				t.Fatalf("%s %s: re-ADD: %v", b, fam, err)
			}
			if err := redirect.Verify(tb, rs); err != nil {
				t.Fatalf("%s %s: CHECK right after re-ADD: %v", b, fam, err)
			}
			// On a clean table: the fresh ADD every new pod takes.
			if err := redirect.Cleanup(tb, fam); err != nil {
				t.Fatal(err)
			}
			if saved, err := tb.Save(fam); err != nil || strings.Contains(saved, "ISTIO_") {
				t.Fatalf("%s %s: cleanup left %v\n%s", b, fam, err, saved)
			}
			if err := redirect.Apply(tb, rs); err != nil {
				t.Fatalf("%s %s: ADD: %v", b, fam, err)
			}
			if err := redirect.Verify(tb, rs); err != nil {
				t.Fatalf("%s %s: CHECK right after ADD: %v", b, fam, err)
			}
		}
	})
}
