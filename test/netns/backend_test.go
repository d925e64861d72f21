package netns

import (
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/meshcni/mesh-cni/pkg/nat"
)

// TestAutoBackend: "auto" follows the node — legacy when the (host) netns's
// legacy tables hold rules, nft otherwise. A netns stands in for the host.
func TestAutoBackend(t *testing.T) {
	resolveIn := func(n string) nat.Backend {
		t.Helper()
		var b nat.Backend
		err := ns.WithNetNSPath(n, func(ns.NetNS) error {
			var err error
			b, err = nat.Auto.Resolve()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	host := newNetns(t, "mcni-host")
	if b := resolveIn(host.Path()); b != nat.NFT {
		t.Fatalf("a host without legacy rules resolved to %s", b)
	}
	// Rules in the nft backend do not make a legacy node.
	if err := host.Run("iptables-nft", "-w", "10", "-t", "filter", "-A", "INPUT", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
	if b := resolveIn(host.Path()); b != nat.NFT {
		t.Fatalf("an nft host resolved to %s", b)
	}
	if err := host.Run("iptables-legacy", "-w", "10", "-t", "nat", "-A", "POSTROUTING", "-j", "RETURN"); err != nil {
		t.Fatal(err)
	}
	if b := resolveIn(host.Path()); b != nat.Legacy {
		t.Fatalf("a host with legacy rules resolved to %s", b)
	}
	for _, b := range []nat.Backend{nat.Legacy, nat.NFT} {
		if got, _ := b.Resolve(); got != b {
			t.Fatalf("explicit %s resolved to %s", b, got)
		}
	}
}
