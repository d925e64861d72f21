// Package netns runs mesh-cni's redirect against the real kernel: real
// network namespaces, real iptables (legacy and nft), real traffic.
package netns

import (
	"os"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

var backends = []nat.Backend{nat.Legacy, nat.NFT}

func TestMain(m *testing.M) {
	if why := cnitest.RequireRoot(); why != "" {
		// These tests are the point of the suite; skipping silently would
		// turn a CI without root into a green run that tested nothing.
		os.Stderr.WriteString("test/netns " + why + "\n")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "mesh-cni-netns-")
	if err != nil {
		panic(err)
	}
	// MkdirTemp is 0700; the stand-ins run as UID 1000 and 1337.
	if err := os.Chmod(dir, 0o755); err != nil {
		panic(err)
	}
	standin, err = cnitest.BuildBinary(dir, "./test/standin", "standin")
	if err != nil {
		os.RemoveAll(dir)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// standin is the stand-in sidecar/app/dialer binary, built once.
var standin string

// newNetns creates a namespace deleted when the test ends, pass or fail.
func newNetns(t *testing.T, prefix string) *cnitest.Netns {
	t.Helper()
	n, err := cnitest.NewNetns(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Delete)
	return n
}

func tablesFor(n *cnitest.Netns, b nat.Backend) *nat.Netns {
	return &nat.Netns{Path: n.Path(), Backend: b, LockWait: 5e9}
}
