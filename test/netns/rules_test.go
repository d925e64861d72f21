package netns

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
)

// kernelRules reads our part of the nat table back from the kernel, as
// iptables-save prints it, in a stable order (chains in OwnChains order,
// built-in chains' jumps first). A rule of another chain is a jump into
// ours when it ends in "-j/-g <our chain>" (plain text handling, not the
// parser under test).
func kernelRules(t *testing.T, tb *nat.Netns, fam redirect.Family) []string {
	t.Helper()
	text, err := tb.Save(fam)
	if err != nil {
		t.Fatal(err)
	}
	var jumps, own []string
	byChain := map[string][]string{}
	for _, line := range saveItems(text) {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		chain := strings.Fields(line)[1]
		if slices.Contains(redirect.OwnChains, chain) {
			byChain[chain] = append(byChain[chain], line)
		} else if jumpsIntoOwn(line) {
			jumps = append(jumps, line)
		}
	}
	for _, c := range redirect.OwnChains {
		own = append(own, byChain[c]...)
	}
	return append(jumps, own...)
}

// saveItems splits iptables-save output into chain declarations and
// rules; a physical line that starts neither continues the one before (a
// comment holding a newline).
func saveItems(text string) []string {
	var items []string
	for _, l := range strings.Split(text, "\n") {
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "*") || l == "COMMIT":
		case strings.HasPrefix(l, ":") || strings.HasPrefix(l, "-A "):
			items = append(items, l)
		case len(items) > 0:
			items[len(items)-1] += "\n" + l
		}
	}
	return items
}

func jumpsIntoOwn(rule string) bool {
	for _, c := range redirect.OwnChains {
		if strings.HasSuffix(rule, " -j "+c) || strings.HasSuffix(rule, " -g "+c) {
			return true
		}
	}
	return false
}

// TestCasesInKernel is the second runner of redirecttest.Cases: every case
// the golden test renders is loaded into a real netns with each backend and
// read back; what the kernel holds must equal the golden file's rules.
func TestCasesInKernel(t *testing.T) {
	node := redirect.DefaultNode()
	for _, b := range backends {
		for _, c := range redirecttest.Cases {
			if c.WantErr != "" {
				continue // covered at the plug-in level: nothing is programmed
			}
			for _, fam := range c.Families {
				t.Run(string(b)+"/"+c.Name+"/"+fam.String(), func(t *testing.T) {
					s, err := node.Resolve(c.Annotations, c.Proxy)
					if err != nil {
						t.Fatal(err)
					}
					rs := redirect.Build(s, fam)
					pod := newNetns(t, "mcni-case")
					tb := tablesFor(pod, b)
					if err := redirect.Apply(tb, rs); err != nil {
						t.Fatal(err)
					}
					golden, err := os.ReadFile(filepath.Join("..", "..", "pkg", "redirect", "testdata", redirecttest.Golden(c, fam)))
					if err != nil {
						t.Fatal(err)
					}
					// Load the golden file itself into a second netns: the
					// kernel normalises both the same way.
					ref := newNetns(t, "mcni-ref")
					if err := tablesFor(ref, b).Restore(fam, string(golden)); err != nil {
						t.Fatal(err)
					}
					got, want := kernelRules(t, tb, fam), kernelRules(t, tablesFor(ref, b), fam)
					if !slices.Equal(got, want) {
						t.Fatalf("kernel holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
					}
					if err := redirect.Verify(tb, rs); err != nil {
						t.Fatalf("Verify after Apply: %v", err)
					}
				})
			}
		}
	}
}

// TestSeedSpecInKernel loads the shared spec's restore input and our
// default rules for the seed pod into two netns; the kernel must hold the
// same rules in both.
func TestSeedSpecInKernel(t *testing.T) {
	restore, err := redirecttest.SeedRestore()
	if err != nil {
		t.Fatal(err)
	}
	s, err := redirect.DefaultNode().Resolve(redirecttest.SeedAnnotations, redirect.Proxy{UID: 1337, GID: 1337})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			ours, ref := newNetns(t, "mcni-seed"), newNetns(t, "mcni-spec")
			if err := redirect.Apply(tablesFor(ours, b), redirect.Build(s, redirect.IPv4)); err != nil {
				t.Fatal(err)
			}
			if err := tablesFor(ref, b).Restore(redirect.IPv4, restore); err != nil {
				t.Fatal(err)
			}
			got, want := kernelRules(t, tablesFor(ours, b), redirect.IPv4), kernelRules(t, tablesFor(ref, b), redirect.IPv4)
			if len(want) != 21 {
				t.Fatalf("spec loaded %d rules, want 21 (2 jumps + 19 in our chains)", len(want))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("kernel holds\n%s\nthe seed's spec gives\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func seedRules(t *testing.T, annotations map[string]string) redirect.Ruleset {
	t.Helper()
	s, err := redirect.DefaultNode().Resolve(annotations, redirect.Proxy{UID: 1337, GID: 1337})
	if err != nil {
		t.Fatal(err)
	}
	return redirect.Build(s, redirect.IPv4)
}

// TestReapplyTamperCheck walks one netns through what a pod's life can do
// to it: a repeated ADD, ADD with other settings, tampering, CHECK, DEL.
func TestReapplyTamperCheck(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			pod := newNetns(t, "mcni-life")
			tb := tablesFor(pod, b)
			rs := seedRules(t, redirecttest.SeedAnnotations)
			if err := redirect.Apply(tb, rs); err != nil {
				t.Fatal(err)
			}
			first := kernelRules(t, tb, redirect.IPv4)

			// Repeated ADD, same settings: same rules, no duplicate jumps.
			if err := redirect.Apply(tb, rs); err != nil {
				t.Fatal(err)
			}
			if again := kernelRules(t, tb, redirect.IPv4); !slices.Equal(first, again) {
				t.Fatalf("re-ADD changed the rules:\n%s", strings.Join(again, "\n"))
			}

			// CHECK passes on what ADD wrote.
			if err := redirect.Verify(tb, rs); err != nil {
				t.Fatal(err)
			}

			// Tamper: drop the PREROUTING jump, add a stray rule, duplicate
			// the OUTPUT jump. CHECK must fail and say what differs.
			for _, args := range [][]string{
				{"-t", "nat", "-D", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"},
				{"-t", "nat", "-I", "ISTIO_OUTPUT", "1", "-p", "tcp", "--dport", "443", "-j", "RETURN"},
				{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT"},
			} {
				if err := pod.Run("iptables-"+string(b), append([]string{"-w", "10"}, args...)...); err != nil {
					t.Fatal(err)
				}
			}
			err := redirect.Verify(tb, rs)
			if err == nil {
				t.Fatal("CHECK passed on a tampered netns")
			}
			for _, want := range []string{"missing: -A PREROUTING -p tcp -j ISTIO_INBOUND", "--dport 443 -j RETURN", "unexpected: -A OUTPUT -p tcp -j ISTIO_OUTPUT"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("CHECK diff does not mention %q:\n%v", want, err)
				}
			}

			// ADD after tampering restores exactly the rules.
			if err := redirect.Apply(tb, rs); err != nil {
				t.Fatal(err)
			}
			if fixed := kernelRules(t, tb, redirect.IPv4); !slices.Equal(first, fixed) {
				t.Fatalf("ADD after tampering left:\n%s", strings.Join(fixed, "\n"))
			}

			// ADD with other settings replaces the rules.
			other := seedRules(t, map[string]string{redirect.AnnoIncludeInboundPorts: "9080"})
			if err := redirect.Apply(tb, other); err != nil {
				t.Fatal(err)
			}
			if err := redirect.Verify(tb, other); err != nil {
				t.Fatalf("after ADD with new settings: %v", err)
			}
			if err := redirect.Verify(tb, rs); err == nil {
				t.Fatal("old settings still verify after the change")
			}

			// Cleanup removes every chain and jump, and nothing else.
			if err := pod.Run("iptables-"+string(b), "-w", "10", "-t", "nat", "-A", "POSTROUTING", "-j", "RETURN"); err != nil {
				t.Fatal(err)
			}
			if err := redirect.Cleanup(tb, redirect.IPv4); err != nil {
				t.Fatal(err)
			}
			if left := kernelRules(t, tb, redirect.IPv4); len(left) != 0 {
				t.Fatalf("cleanup left %v", left)
			}
			saved, _ := tb.Save(redirect.IPv4)
			if strings.Contains(saved, "ISTIO_") || !strings.Contains(saved, "-A POSTROUTING -j RETURN") {
				t.Fatalf("cleanup touched too much or too little:\n%s", saved)
			}
			// A second cleanup has nothing to do and succeeds.
			if err := redirect.Cleanup(tb, redirect.IPv4); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNSSIsolation: the iptables tools run with a files-only nsswitch.conf.
func TestNSSIsolation(t *testing.T) {
	pod := newNetns(t, "mcni-nss")
	tb := tablesFor(pod, nat.NFT)
	if err := redirect.Apply(tb, seedRules(t, nil)); err != nil {
		t.Fatal(err)
	}
	if tb.IsolationErr != nil {
		t.Fatalf("iptables ran without NSS isolation: %v", tb.IsolationErr)
	}
}
