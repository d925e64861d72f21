package netns

import (
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
)

// awkwardAnnotations are accepted annotation values whose rendering and
// iptables-save's printing can differ in text: ranges that mask to /0 (the
// kernel stores no address match, so iptables-save prints none), IPv4-
// compatible IPv6 addresses (iptables-save prints ::1.2.3.4, Go ::102:304),
// unmasked ranges, bare hosts, and interface names with punctuation.
var awkwardAnnotations = map[string]map[string]string{
	"include-all-v4-by-zero-mask": {redirect.AnnoIncludeOutboundIPRanges: "0.0.0.0/0"},
	"include-all-v6-by-zero-mask": {redirect.AnnoIncludeOutboundIPRanges: "::/0"},
	"include-host-zero-mask":      {redirect.AnnoIncludeOutboundIPRanges: "203.0.113.7/0,2001:db8::7/0"},
	"exclude-zero-masks":          {redirect.AnnoExcludeOutboundIPRanges: "0.0.0.0/0,::/0,203.0.113.7/0"},
	"exclude-v4-compatible-v6":    {redirect.AnnoExcludeOutboundIPRanges: "::1.2.3.4,::102:304/127,::/96"},
	"include-unmasked":            {redirect.AnnoIncludeOutboundIPRanges: "10.1.2.3/8,2001:db8::1/64,192.0.2.1"},
	"exclude-hosts-both":          {redirect.AnnoExcludeOutboundIPRanges: "127.0.0.1,::1,255.255.255.255,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	"interfaces-punctuated":       {redirect.AnnoExcludeInterfaces: "eth0.100,a-b_c,x@y,123456789012345"},
	"ports-edges": {redirect.AnnoIncludeInboundPorts: "1,65535", redirect.AnnoExcludeOutboundPorts: "1,65535",
		redirect.AnnoIncludeOutboundPorts: "65535"},
	"inbound-all-excluded-edges": {redirect.AnnoIncludeInboundPorts: "*", redirect.AnnoExcludeInboundPorts: "15008,15020,1"},
}

// TestRenderRoundTrip: for every golden case and every awkward annotation
// set, on both backends and in both families, what we render is accepted
// by iptables-restore, and what iptables-save then prints compares equal
// to the ruleset (CHECK right after a plain restore); and ADD then CHECK
// through Apply/Verify agree too.
func TestRenderRoundTrip(t *testing.T) {
	sets := map[string]map[string]string{}
	proxies := map[string]redirect.Proxy{}
	for _, c := range redirecttest.Cases {
		if c.WantErr == "" {
			sets["golden/"+c.Name], proxies["golden/"+c.Name] = c.Annotations, c.Proxy
		}
	}
	for name, a := range awkwardAnnotations {
		sets[name], proxies[name] = a, redirect.Proxy{UID: 1337, GID: 1337}
	}
	node := redirect.DefaultNode()
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			n := newNetns(t, "mcni-roundtrip")
			tb := tablesFor(n, b)
			for name, a := range sets {
				s, err := node.Resolve(a, proxies[name])
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
					rs := redirect.Build(s, fam)
					// A TPROXY ruleset's policy route is no restore input:
					// only ADD (Apply) can program it.
					if rs.Route == nil {
						if err := tb.Restore(fam, redirect.Render(rs)); err != nil {
							t.Fatalf("%s %s: iptables-restore refused the rendering: %v", name, fam, err)
						}
						if err := redirect.Verify(tb, rs); err != nil {
							t.Errorf("%s %s: render, restore, save, Diff: %v", name, fam, err)
						}
						if err := redirect.Cleanup(tb, fam); err != nil {
							t.Fatal(err)
						}
					}
					if err := redirect.Apply(tb, rs); err != nil {
						t.Errorf("%s %s: ADD: %v", name, fam, err)
					} else if err := redirect.Verify(tb, rs); err != nil {
						t.Errorf("%s %s: CHECK right after ADD: %v", name, fam, err)
					}
					if err := redirect.Cleanup(tb, fam); err != nil {
						t.Fatal(err)
					}
					if saved, _ := tb.Save(fam); strings.Contains(saved, "ISTIO_") {
						t.Fatalf("%s %s: cleanup left\n%s", name, fam, saved)
					}
				}
			}
		})
	}
}
