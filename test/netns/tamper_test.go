package netns

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// foreignSetup is what other software keeps in the pod's nat table before
// any tampering: awkward text on purpose (spaces, quotes, backslashes, a
// comment that looks like a jump into our chains, a chain of its own).
var foreignSetup = [][]string{
	{"-N", "KEEP"},
	{"-A", "KEEP", "-d", "10.0.0.0/8", "-m", "comment", "--comment", `keep  me "x" \ y`, "-j", "RETURN"},
	{"-A", "PREROUTING", "-j", "KEEP"},
	{"-A", "POSTROUTING", "-m", "comment", "--comment", "not a jump: -j ISTIO_OUTPUT", "-j", "RETURN"},
}

// tamper is one thing done to a programmed netns, as iptables commands
// (nat table), or as nft commands where iptables cannot express it.
type tamper struct {
	name     string
	iptables [][]string
	nft      [][]string // nft backend only
	breaks   bool       // CHECK must fail afterwards
}

var tampers = []tamper{
	{name: "jump with a two-space comment", breaks: true, iptables: [][]string{
		{"-A", "OUTPUT", "-p", "tcp", "-m", "comment", "--comment", "a  b", "-j", redirect.ChainOutput}}},
	{name: "jump with quotes and backslashes in its comment", breaks: true, iptables: [][]string{
		{"-I", "PREROUTING", "1", "-m", "comment", "--comment", `say "hi" \ 'there'`, "-j", redirect.ChainInbound}}},
	{name: "jump with a newline in its comment", breaks: true, iptables: [][]string{
		{"-A", "OUTPUT", "-m", "comment", "--comment", "x\n-j ISTIO_OUTPUT", "-j", redirect.ChainOutput}}},
	{name: "goto into our chain", breaks: true, iptables: [][]string{
		{"-A", "PREROUTING", "-s", "192.0.2.0/24", "-g", redirect.ChainInbound}}},
	{name: "foreign chain jumping into ours", breaks: true, iptables: [][]string{
		{"-N", "SNEAK"}, {"-A", "SNEAK", "-p", "tcp", "-j", redirect.ChainRedirect}, {"-I", "OUTPUT", "1", "-j", "SNEAK"}}},
	{name: "foreign chain jumping into ours, awkwardly", breaks: true, iptables: [][]string{
		{"-N", "SNEAK2"}, {"-A", "SNEAK2", "-m", "comment", "--comment", `"  "`, "-j", redirect.ChainInRedirect}, {"-A", "OUTPUT", "-j", "SNEAK2"}}},
	{name: "rule inserted in our chain", breaks: true, iptables: [][]string{
		{"-I", redirect.ChainOutput, "1", "-p", "tcp", "--dport", "443", "-j", "RETURN"}}},
	{name: "our rule jumping to a foreign chain", breaks: true, iptables: [][]string{
		{"-N", "AWAY"}, {"-I", redirect.ChainInbound, "1", "-j", "AWAY"}}},
	{name: "our rule replaced", breaks: true, iptables: [][]string{
		{"-R", redirect.ChainRedirect, "1", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "9999"}}},
	{name: "our chain deleted", breaks: true, iptables: [][]string{
		{"-D", "PREROUTING", "-p", "tcp", "-j", redirect.ChainInbound}, {"-F", redirect.ChainInbound}, {"-X", redirect.ChainInbound}}},
	{name: "every chain of ours deleted", breaks: true, iptables: [][]string{
		{"-D", "PREROUTING", "-p", "tcp", "-j", redirect.ChainInbound}, {"-D", "OUTPUT", "-p", "tcp", "-j", redirect.ChainOutput},
		{"-F", redirect.ChainInbound}, {"-F", redirect.ChainOutput}, {"-F", redirect.ChainRedirect}, {"-F", redirect.ChainInRedirect},
		{"-X", redirect.ChainInbound}, {"-X", redirect.ChainOutput},
		{"-X", redirect.ChainRedirect}, {"-X", redirect.ChainInRedirect}}},
	{name: "jump removed", breaks: true, iptables: [][]string{
		{"-D", "OUTPUT", "-p", "tcp", "-j", redirect.ChainOutput}}},
	{name: "jumps duplicated", breaks: true, iptables: [][]string{
		{"-A", "OUTPUT", "-p", "tcp", "-j", redirect.ChainOutput}, {"-I", "OUTPUT", "1", "-p", "tcp", "-j", redirect.ChainOutput},
		{"-A", "PREROUTING", "-p", "tcp", "-j", redirect.ChainInbound}}},
	{name: "our chain flushed", breaks: true, iptables: [][]string{{"-F", redirect.ChainOutput}}},
	{name: "a foreign comment that reads like our jump", iptables: [][]string{
		{"-I", "OUTPUT", "1", "-m", "comment", "--comment", "x -j ISTIO_OUTPUT y", "-j", "RETURN"}}},
	{name: "a foreign rule with a newline in its comment", iptables: [][]string{
		{"-A", "OUTPUT", "-o", "lo", "-m", "comment", "--comment", "a\nb", "-j", "RETURN"}}},
	// iptables refuses a DROP policy in nat; nft can set one.
	{name: "policy change", nft: [][]string{{"add", "chain", "ip", "nat", "POSTROUTING", "{", "policy", "drop", ";", "}"}}},
}

// TestTamperRepair: whatever was done to the netns, a re-ADD through the
// real binary restores our rules exactly, CHECK passes again, and every
// foreign rule, chain and policy is as the tampering left it.
func TestTamperRepair(t *testing.T) {
	for _, b := range backends {
		want := []string(nil)
		for _, tc := range tampers {
			if b == nat.Legacy && tc.iptables == nil {
				continue
			}
			t.Run(string(b)+"/"+tc.name, func(t *testing.T) {
				p := newPlugin(t, b, cnitest.SeedPod("default", "tampered", redirecttest.SeedAnnotations))
				if want == nil {
					want = seedReference(t, b)
				}
				n := newNetns(t, "mcni-tamper")
				ipt := func(cmds [][]string) {
					t.Helper()
					for _, c := range cmds {
						if err := n.Run("iptables-"+string(b), append([]string{"-w", "10", "-t", "nat"}, c...)...); err != nil {
							t.Fatal(err)
						}
					}
				}
				ipt(foreignSetup)
				if err := run(p.cmd("ADD", n, "tampered")); err != nil {
					t.Fatal(err)
				}
				ipt(tc.iptables)
				for _, c := range tc.nft {
					if err := n.Run("nft", c...); err != nil {
						t.Fatal(err)
					}
				}
				foreign := foreignView(t, n, b)
				checkErr := run(p.cmd("CHECK", n, "tampered"))
				if tc.breaks && checkErr == nil {
					t.Fatal("CHECK passed on a tampered netns")
				}
				if err := run(p.cmd("ADD", n, "tampered")); err != nil {
					t.Fatalf("re-ADD could not repair: %v", err)
				}
				if err := holdsExactly(t, p, n, "tampered", want); err != nil {
					t.Fatal(err)
				}
				if after := foreignView(t, n, b); !slices.Equal(after, foreign) {
					t.Fatalf("re-ADD touched foreign rules:\nbefore\n  %s\nafter\n  %s", strings.Join(foreign, "\n  "), strings.Join(after, "\n  "))
				}
				// And a DEL after all that leaves only the foreign rules.
				if err := run(p.cmd("DEL", n, "tampered")); err != nil {
					t.Fatal(err)
				}
				if saved, _ := tablesFor(n, b).Save(redirect.IPv4); strings.Contains(saved, ":ISTIO_") {
					t.Fatalf("DEL left our chains:\n%s", saved)
				}
				if after := foreignView(t, n, b); !slices.Equal(after, foreign) {
					t.Fatalf("DEL touched foreign rules:\nbefore\n  %s\nafter\n  %s", strings.Join(foreign, "\n  "), strings.Join(after, "\n  "))
				}
			})
		}
	}
}

// foreignView is the nat table without anything of ours: not our chains,
// not the rules that jump or go into them (read as kernelRules reads them).
func foreignView(t *testing.T, n *cnitest.Netns, b nat.Backend) []string {
	t.Helper()
	text, err := tablesFor(n, b).Save(redirect.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range saveItems(text) {
		ours := jumpsIntoOwn(it)
		for _, c := range redirect.OwnChains {
			if strings.HasPrefix(it, ":"+c+" ") || strings.HasPrefix(it, "-A "+c+" ") {
				ours = true
			}
		}
		if !ours {
			// Counters are the kernel's, not anyone's configuration.
			if i := strings.LastIndex(it, " ["); strings.HasPrefix(it, ":") && i > 0 {
				it = it[:i]
			}
			out = append(out, it)
		}
	}
	return out
}
