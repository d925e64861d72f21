package readiness

import (
	"errors"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	cases := []struct {
		name   string
		in     Inputs
		ready  bool
		reason string // substring
	}{
		{"nothing heard", Inputs{}, false, "installer has not reported yet"},
		{"not installed", Inputs{InstallReason: "config entry: no primary CNI configuration in /host/etc/cni/net.d yet"}, false, "no primary CNI"},
		{"not installed beats the rest", Inputs{InstallReason: "kubeconfig: x", Agent: errors.New("a"), StatusRun: true}, false, "installation not in place: kubeconfig"},
		{"agent not synced", Inputs{Installed: true, Agent: errors.New("agent pod cache not synced")}, false, "node agent not ready: agent pod cache not synced"},
		{"status not run", Inputs{Installed: true}, false, "STATUS not run"},
		{"status failed", Inputs{Installed: true, StatusRun: true, Status: errors.New("no iptables-restore (legacy or nft) on PATH")}, false, "plug-in STATUS failed: no iptables-restore"},
		{"all good", Inputs{Installed: true, StatusRun: true}, true, "STATUS passed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ready, reason := Decide(c.in)
			if ready != c.ready || !strings.Contains(reason, c.reason) {
				t.Errorf("Decide(%+v) = %v, %q; want %v, ...%q...", c.in, ready, reason, c.ready, c.reason)
			}
		})
	}
}

// TestNeedsStatus: STATUS (an exec) runs only when the cheap inputs hold.
func TestNeedsStatus(t *testing.T) {
	if needsStatus(Inputs{}) || needsStatus(Inputs{Installed: true, Agent: errors.New("x")}) {
		t.Error("STATUS would run for a node that cannot be ready")
	}
	if !needsStatus(Inputs{Installed: true}) {
		t.Error("STATUS would not run for an installed node with a ready agent")
	}
}
