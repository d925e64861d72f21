package helm

import (
	"sort"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/agent"
	"github.com/meshcni/mesh-cni/pkg/installer"
)

// TestEveryVariableIsRead: each ConfigMap key and each environment variable
// the chart gives install-cni is one install-cni reads (an installer or agent
// flag's variable, or the downward-API values it records). A misspelt key
// would be ignored silently and the setting lost; the comparison with
// deploy/ cannot see a typo both carry.
func TestEveryVariableIsRead(t *testing.T) {
	tl := findTools(t)
	known := map[string]bool{
		// informational, from the downward API (docs/installer.md)
		"POD_NAME": true, "POD_NAMESPACE": true, "POD_UID": true, "NODE_NAME": true,
	}
	for _, f := range installer.Flags {
		known[f.Env] = true
	}
	for _, e := range agent.EnvNames() {
		known[e] = true
	}
	renders := [][]string{nil, {"-f", "testdata/custom-values.yaml"}}
	for _, m := range []string{"label", "repair", "off"} {
		renders = append(renders, []string{"--set", "repairMode=" + m})
	}
	unknown := map[string]bool{}
	for _, args := range renders {
		objs := tl.renderObjects(t, args...)
		cm := objs["v1 ConfigMap "+releaseNS+"/mesh-cni-config"]
		data, _ := get(map[string]any(cm), "data").(map[string]any)
		if len(data) == 0 {
			t.Fatal("no ConfigMap data rendered")
		}
		for k := range data {
			if !known[k] {
				unknown["ConfigMap key "+k] = true
			}
		}
		containers, _ := get(map[string]any(daemonSet(t, objs)), "spec", "template", "spec", "containers").([]any)
		env, _ := get(containers[0], "env").([]any)
		for _, e := range env {
			name, _ := get(e, "name").(string)
			// extraEnv (testdata) sets the in-cluster API address, which
			// client-go and --kube-api-server's default read
			if !known[name] && !strings.HasPrefix(name, "KUBERNETES_SERVICE_") {
				unknown["env "+name] = true
			}
		}
	}
	var list []string
	for k := range unknown {
		list = append(list, k)
	}
	sort.Strings(list)
	if len(list) > 0 {
		t.Errorf("the chart sets variables install-cni does not read (install-cni --help lists them):\n  %s", strings.Join(list, "\n  "))
	}
}
