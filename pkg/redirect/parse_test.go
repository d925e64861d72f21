package redirect

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []uint16
		err  string
	}{
		{"", nil, ""},
		{"80", []uint16{80}, ""},
		{"80, 443,80", []uint16{80, 443}, ""},
		{"65535", []uint16{65535}, ""},
		{"65536", nil, "not in 1-65535"},
		{"0", nil, "not in 1-65535"},
		{"+80", nil, "not a decimal"},
		{"0x50", nil, "not a decimal"},
		{"80 443", nil, "not a decimal"},
		{"80,", nil, "empty item"},
		{"*", nil, "not a decimal"},
	} {
		got, err := ParsePorts(c.in)
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) || !slices.Equal(got, c.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v, %q", c.in, got, err, c.want, c.err)
		}
	}
	if s, err := ParsePortSet(" * "); err != nil || !s.All {
		t.Errorf("wildcard: %+v %v", s, err)
	}
	if s, err := ParsePortSet(""); err != nil || !s.Empty() {
		t.Errorf("empty: %+v %v", s, err)
	}
}

func TestParsePrefixes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		err  string
	}{
		{"10.0.0.0/8,192.168.0.1", []string{"10.0.0.0/8", "192.168.0.1/32"}, ""},
		{"10.1.2.3/8", []string{"10.0.0.0/8"}, ""},
		{"fd00::1/8, ::1", []string{"fd00::/8", "::1/128"}, ""},
		{"10.0.0.0/8 extra", nil, "not a CIDR"},
		{"10.0.0.0/33", nil, "not a CIDR"},
		{"fe80::1%eth0", nil, "not an IP"},
		{"example.com", nil, "not an IP"},
		{"::ffff:10.0.0.1", nil, "IPv4-mapped"},
	} {
		got, err := ParsePrefixes(c.in)
		var gs []string
		for _, p := range got {
			gs = append(gs, p.String())
		}
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) || !slices.Equal(gs, c.want) {
			t.Errorf("ParsePrefixes(%q) = %v, %v; want %v, %q", c.in, gs, err, c.want, c.err)
		}
	}
}

func TestParseInterfaces(t *testing.T) {
	if got, err := ParseInterfaces("eth1,net1.100,veth@if3"); err != nil || len(got) != 3 {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"eth0 -j DROP", "a/b", "sixteen-chars-xx", "..", "eth0\"", "$(x)", "-d", "--dport"} {
		if _, err := ParseInterfaces(bad); err == nil {
			t.Errorf("ParseInterfaces(%q) accepted", bad)
		}
	}
}

func TestFamilySplit(t *testing.T) {
	s := Settings{IncludeInboundPorts: PortSet{All: true}, IncludeOutboundIPRanges: PrefixSet{Prefixes: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}}
	v4, v6 := Render(Build(s, IPv4)), Render(Build(s, IPv6))
	if !strings.Contains(v4, "-d 10.0.0.0/8 -j ISTIO_REDIRECT") || strings.Contains(v4, "fd00") {
		t.Errorf("v4:\n%s", v4)
	}
	if !strings.Contains(v6, "-d fd00::/8 -j ISTIO_REDIRECT") || strings.Contains(v6, "10.0.0.0") {
		t.Errorf("v6:\n%s", v6)
	}
}
