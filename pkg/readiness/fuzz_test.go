package readiness

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/version"
)

// FuzzStatusStdin: whatever a conflist holds, StatusStdin never panics, and
// what it hands STATUS is a JSON object of type mesh-cni, a CNI version
// with STATUS, no logFile, and a kubeconfig only ever moved from the host
// dir to the container dir.
func FuzzStatusStdin(f *testing.F) {
	seeds, _ := filepath.Glob("../installer/testdata/golden/*/*/*.conflist")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[{"type":"calico"},{"type":"mesh-cni","kubeconfig":"/etc/cni/net.d/mesh-cni-kubeconfig","logFile":"/var/log/m.log"}]}`))
	f.Add([]byte(`{"type":"mesh-cni","cniVersion":"1.1.0"}`))
	f.Add([]byte(`{"plugins":[{"type":"mesh-cni","kubeconfig":"/etc/cni/net.d/../../x"}]}`))
	f.Fuzz(func(t *testing.T, conflist []byte) {
		out, err := StatusStdin(conflist, "/etc/cni/net.d", "/host/etc/cni/net.d")
		if err != nil {
			return
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("not a JSON object: %s", out)
		}
		if m["type"] != "mesh-cni" {
			t.Errorf("type %v handed to STATUS: %s", m["type"], out)
		}
		if _, ok := m["logFile"]; ok {
			t.Errorf("logFile kept: %s", out)
		}
		v, _ := m["cniVersion"].(string)
		if ok, err := version.GreaterThanOrEqualTo(v, statusVersion); err != nil || !ok {
			t.Errorf("cniVersion %q does not allow STATUS", v)
		}
	})
}
