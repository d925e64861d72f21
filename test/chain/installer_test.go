package chain

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/installer"
	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// TestInstalledChain: install-cni merges its entry into a node's bridge
// conflist and copies the plug-in; the runtime then runs exactly that file
// through libcni, and the seed pod gets the seed's rules. Stopping the
// installer undoes it.
func TestInstalledChain(t *testing.T) {
	dir := t.TempDir()
	netDir, hostBin, saDir := filepath.Join(dir, "net.d"), filepath.Join(dir, "bin"), filepath.Join(dir, "sa")
	for _, d := range []string{netDir, hostBin, saDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	primary := filepath.Join(netDir, "10-bridge.conflist")
	if err := os.WriteFile(primary, cnitest.BridgeConfList(dir, "1.0.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(saDir, "token"), []byte("test-token"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The plug-in runs in the node namespace, so the API stand-in lives there.
	node, err := cnitest.NewNetns("mcni-node")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Delete)
	srv, err := cnitest.NewTLSPodServerIn(node.Path(), cnitest.SeedPod("default", podName, redirecttest.SeedAnnotations))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := os.WriteFile(filepath.Join(saDir, "ca.crt"), srv.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg, err := installer.ParseFlags([]string{
		"--cni-net-dir", netDir, "--cni-bin-dir", hostBin, "--sandbox-dir", filepath.Join(dir, "sandboxes"), "--plugin-binary", filepath.Join(binDir, "mesh-cni"),
		"--kubeconfig-dir", netDir, "--host-kubeconfig-dir", netDir, "--service-account-dir", saDir,
		"--kube-api-server", srv.URL, "--health-addr", "", "--metrics-addr", "",
		"--iptables-backend", "nft", "--plugin-log-level", "debug",
	}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	inst, err := installer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inst.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "installer ready", inst.Ready)

	merged, err := os.ReadFile(primary)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(merged), `"type": "mesh-cni"`) && !strings.Contains(string(merged), `"type":"mesh-cni"`) {
		t.Fatalf("no mesh-cni entry in %s:\n%s", primary, merged)
	}
	chain, err := cnitest.NewChainFromBytes(dir, merged, hostBin, cnitest.DebianPluginDir)
	if err != nil {
		t.Fatal(err)
	}
	chain.Node.Delete() // use the namespace the pod server listens in
	chain.Node = node
	if last := chain.ConfList.Plugins[len(chain.ConfList.Plugins)-1].Network.Type; last != "mesh-cni" {
		t.Fatalf("mesh-cni is not last: %s", last)
	}

	podNS, err := cnitest.NewNetns("mcni-pod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(podNS.Delete)
	p := cnitest.Pod{Netns: podNS, Namespace: "default", Name: podName, ContainerID: "ctr-installed"}
	if _, err := chain.Add(p); err != nil {
		t.Fatalf("ADD through the installed conflist: %v", err)
	}
	if err := redirect.Verify(&nat.Netns{Path: podNS.Path(), Backend: nat.NFT}, seedRuleset(t)); err != nil {
		t.Fatalf("installed chain did not program the seed's rules: %v", err)
	}
	if err := chain.Del(p); err != nil {
		t.Fatal(err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("installer exit: %v", err)
	}
	done <- nil // for the Cleanup above
	after, _ := os.ReadFile(primary)
	if strings.Contains(string(after), "mesh-cni") {
		t.Fatalf("entry left after the installer stopped:\n%s", after)
	}
	if _, err := os.Stat(filepath.Join(hostBin, "mesh-cni")); !os.IsNotExist(err) {
		t.Fatalf("binary left after the installer stopped: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
