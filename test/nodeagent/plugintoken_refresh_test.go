package nodeagent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshcni/mesh-cni/pkg/installer"
	"github.com/meshcni/mesh-cni/pkg/plugintoken"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// TestPluginTokenRefreshReplacesFile: the installer and the token refresher
// wired as install-cni wires them, against the real API server, with the
// refresher's clock injected: at 80% of the token's hour the refresher asks
// for a new token and the installer replaces the token file (0600) with it,
// while the old one is still valid, so the plug-in never holds an expired
// token. (The API server grants no less than 10 minutes; the clock is moved
// instead of waiting.)
func TestPluginTokenRefreshReplacesFile(t *testing.T) {
	requireAPI(t)
	dir := t.TempDir()
	const node = "node-refresh"
	createNode(t, node)
	kc, err := api.WriteKubeconfig(dir, dsUser)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	core, err := typedcorev1.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	fc := clocktesting.NewFakeClock(time.Now())
	r, err := plugintoken.New(plugintoken.Config{Namespace: dsNamespace, ServiceAccount: pluginSA, Expiry: time.Hour,
		BoundNode: node, Clock: fc, Registry: prometheus.NewRegistry()}, core.ServiceAccounts(dsNamespace))
	if err != nil {
		t.Fatal(err)
	}
	netDir, cniBin, sa := filepath.Join(dir, "net.d"), filepath.Join(dir, "cnibin"), filepath.Join(dir, "sa")
	for _, d := range []string{netDir, cniBin, sa} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(sa, "token"), []byte("the-daemonset-token"), 0o600)
	_ = os.WriteFile(filepath.Join(sa, "ca.crt"), []byte("ca"), 0o600)
	_ = os.WriteFile(filepath.Join(netDir, "10-bridge.conflist"), cnitest.BridgeConfList(dir, "1.0.0"), 0o644)
	cfg, err := installer.ParseFlags([]string{"--cni-net-dir=" + netDir, "--cni-bin-dir=" + cniBin, "--kubeconfig-dir=" + netDir,
		"--service-account-dir=" + sa, "--plugin-binary=" + filepath.Join(binDir, "mesh-cni"), "--kube-api-server=" + api.URL,
		"--health-addr=", "--metrics-addr=", "--agent-socket=", "--resync-interval=1h"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.PluginToken, cfg.Registry = r, prometheus.NewRegistry()
	cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	in, err := installer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { r.Run(ctx); done <- struct{}{} }()
	go func() { _ = in.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	tokPath := filepath.Join(netDir, installer.TokenName)
	read := func() []byte {
		b, _ := os.ReadFile(tokPath)
		return b
	}
	eventually(t, 20*time.Second, "first token written", func() (bool, string) { return len(read()) > 0 && in.Ready(), "" })
	tok1 := read()
	if bytes.Equal(tok1, []byte("the-daemonset-token")) {
		t.Fatal("the DaemonSet's own token was copied")
	}
	wantUser := "system:serviceaccount:" + dsNamespace + ":" + pluginSA
	if u, _, err := whoAmI(t, string(tok1)); err != nil || u != wantUser {
		t.Fatalf("first token: %q %v", u, err)
	}
	parked := func() (bool, string) { return fc.HasWaiters(), "refresher parked on its clock" }

	eventually(t, 5*time.Second, "refresher waiting", parked)
	fc.Step(47 * time.Minute)
	eventually(t, 5*time.Second, "refresher waiting", parked)
	if !bytes.Equal(read(), tok1) {
		t.Fatal("token replaced before 80% of its lifetime")
	}
	fc.Step(2 * time.Minute)
	eventually(t, 20*time.Second, "token file replaced at 80% of the lifetime", func() (bool, string) {
		b := read()
		return len(b) > 0 && !bytes.Equal(b, tok1), ""
	})
	tok2 := read()
	if st, err := os.Stat(tokPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("refreshed token file: %v %v", err, st)
	}
	if u, _, err := whoAmI(t, string(tok2)); err != nil || u != wantUser {
		t.Fatalf("refreshed token: %q %v", u, err)
	}
	// Replaced before it expired: the old one still works at that moment.
	if _, _, err := whoAmI(t, string(tok1)); err != nil {
		t.Fatalf("the old token was already refused when it was replaced: %v", err)
	}
	if !in.Ready() {
		t.Fatal("not ready after the refresh")
	}
}
