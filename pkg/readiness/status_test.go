package readiness

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestStatusStdin(t *testing.T) {
	list := `{"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[
		{"type":"calico","kubeconfig":"/etc/cni/net.d/calico-kubeconfig"},
		{"type":"mesh-cni","kubeconfig":"/etc/cni/net.d/mesh-cni-kubeconfig","logFile":"/var/log/mesh-cni.log",
		 "agentSocket":"/var/run/mesh-cni/agent.sock","failurePolicy":"Block"}]}`
	cases := []struct {
		name, list, hostDir, dir string
		want                     map[string]any
	}{
		{"container view of the kubeconfig, logFile dropped, version raised", list, "/etc/cni/net.d", "/host/etc/cni/net.d", map[string]any{
			"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "mesh-cni",
			"kubeconfig": "/host/etc/cni/net.d/mesh-cni-kubeconfig", "agentSocket": "/var/run/mesh-cni/agent.sock", "failurePolicy": "Block"}},
		{"same view (tests, host install)", strings.Replace(list, "0.3.1", "1.1.0", 1), "/etc/cni/net.d", "/etc/cni/net.d", map[string]any{
			"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "mesh-cni",
			"kubeconfig": "/etc/cni/net.d/mesh-cni-kubeconfig", "agentSocket": "/var/run/mesh-cni/agent.sock", "failurePolicy": "Block"}},
		{"a kubeconfig outside the mapped dir stays", strings.Replace(list, "/etc/cni/net.d/mesh-cni-kubeconfig", "/etc/other/kc", 1),
			"/etc/cni/net.d", "/host/etc/cni/net.d", map[string]any{
				"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "mesh-cni",
				"kubeconfig": "/etc/other/kc", "agentSocket": "/var/run/mesh-cni/agent.sock", "failurePolicy": "Block"}},
		{"a newer version is kept", strings.Replace(list, "0.3.1", "1.2.0", 1), "", "", map[string]any{
			"cniVersion": "1.2.0", "name": "k8s-pod-network", "type": "mesh-cni",
			"kubeconfig": "/etc/cni/net.d/mesh-cni-kubeconfig", "agentSocket": "/var/run/mesh-cni/agent.sock", "failurePolicy": "Block"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := StatusStdin([]byte(c.list), c.hostDir, c.dir)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if gb, wb := mustJSON(got), mustJSON(c.want); gb != wb {
				t.Errorf("stdin\n got %s\nwant %s", gb, wb)
			}
		})
	}
}

func TestStatusStdinBad(t *testing.T) {
	for name, in := range map[string]string{
		"not JSON":                `{"plugins":[`,
		"no mesh-cni":             `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}`,
		"kubeconfig not a string": `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"mesh-cni","kubeconfig":7}]}`,
	} {
		if _, err := StatusStdin([]byte(in), "/a", "/b"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestStatusError(t *testing.T) {
	exit := &exec.ExitError{}
	err := statusError(exit, []byte(`{"cniVersion":"1.1.0","code":50,"msg":"no iptables-restore (legacy or nft) on PATH"}`), []byte("log"))
	if !strings.Contains(err.Error(), "no iptables-restore") || !strings.Contains(err.Error(), "code 50") {
		t.Errorf("CNI error not named: %v", err)
	}
	err = statusError(errors.New("exit status 2"), nil, []byte(strings.Repeat("x", 2000)))
	if !strings.Contains(err.Error(), "exit status 2") || len(err.Error()) > 600 {
		t.Errorf("stderr fallback: %d bytes: %.80s", len(err.Error()), err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
