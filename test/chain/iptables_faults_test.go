package chain

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/plugin"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// withoutIptables runs a command in a private mount namespace in which
// /usr/sbin (and /sbin, its symlink on Debian) is an empty tmpfs: the
// iptables tools are really not there, for that process alone.
var withoutIptables = []string{"unshare", "--mount", "--propagation", "private", "--",
	"sh", "-c", `mount -t tmpfs -o size=64k mesh-cni-test /usr/sbin && exec "$@"`, "sh"}

// TestIptablesRestoreMissing: on a node without the iptables tools, ADD of
// a qualifying pod fails naming the missing tool, programs nothing, and
// STATUS says the plug-in cannot serve ADDs.
func TestIptablesRestoreMissing(t *testing.T) {
	srv := cnitest.NewPodServer(cnitest.SeedPod("default", podName, redirecttest.SeedAnnotations))
	t.Cleanup(srv.Close)
	kc, err := srv.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []nat.Backend{nat.Legacy, nat.NFT, nat.Auto} {
		t.Run(string(b), func(t *testing.T) {
			pod, err := cnitest.NewNetns("mcni-pod")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pod.Delete)
			conf := netconf("1.0.0", map[string]any{"kubeconfig": kc, "iptablesBackend": string(b), "prevResult": prevResult("1.0.0")})
			stdout, stderr, code := execPluginVia(t, withoutIptables, "ADD", pod.Path(), "K8S_POD_NAMESPACE=default;K8S_POD_NAME="+podName, conf)
			var e types.Error
			if code == 0 || json.Unmarshal([]byte(stdout), &e) != nil {
				t.Fatalf("ADD without iptables: exit %d %s %s", code, stdout, stderr)
			}
			t.Logf("ADD: %s", stdout)
			if e.Code != plugin.CodeProgramming || !strings.Contains(e.Msg, "default/"+podName) ||
				!strings.Contains(e.Msg, "iptables-") || !strings.Contains(e.Msg, "executable file not found") ||
				!strings.Contains(e.Msg, "install the iptables package") {
				t.Errorf("the error does not name the pod and the missing tool: %s", stdout)
			}
			for _, be := range []nat.Backend{nat.Legacy, nat.NFT} {
				if c := istioChains(t, cnitest.Pod{Netns: pod}, be); len(c) > 0 {
					t.Errorf("%s tables hold %v", be, c)
				}
			}
		})
	}
	stdout, _, code := execPluginVia(t, withoutIptables, "STATUS", "", "", netconf("1.1.0", map[string]any{"kubeconfig": kc}))
	var e types.Error
	if code == 0 || json.Unmarshal([]byte(stdout), &e) != nil || e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Msg, "iptables-restore") {
		t.Fatalf("STATUS without iptables: exit %d %s", code, stdout)
	}
}

// failingV6 passes every call to the real tables, but makes the IPv6
// restore carry a rule ip6tables-restore refuses (a jump to a chain that
// does not exist), so the real tool fails that batch as a whole.
type failingV6 struct {
	redirect.Tables
	pod *cnitest.Netns
	be  nat.Backend
	// v4AtFailure is what the IPv4 nat table held when IPv6 failed.
	v4AtFailure []string
	t           *testing.T
}

func (f *failingV6) Restore(fam redirect.Family, script string) error {
	if fam == redirect.IPv6 {
		f.v4AtFailure = istioChains(f.t, cnitest.Pod{Netns: f.pod}, f.be)
		script = strings.Replace(script, "COMMIT", "-A ISTIO_OUTPUT -j MESH_CNI_NO_SUCH_CHAIN\nCOMMIT", 1)
	}
	return f.Tables.Restore(fam, script)
}

// TestRestoreFailsMidBatch: IPv4 is programmed, then ip6tables-restore
// fails: ADD fails and the IPv4 rules are rolled back, so the kernel holds
// no half-redirected pod.
func TestRestoreFailsMidBatch(t *testing.T) {
	srv := cnitest.NewPodServer(cnitest.SeedPod("default", podName, redirecttest.SeedAnnotations))
	t.Cleanup(srv.Close)
	kc, err := srv.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dualStack := map[string]any{"cniVersion": "1.0.0",
		"interfaces": []any{map[string]any{"name": "eth0", "sandbox": "/run/netns/x"}},
		"ips": []any{
			map[string]any{"interface": 0, "address": "198.18.0.5/24", "gateway": "198.18.0.1"},
			map[string]any{"interface": 0, "address": "fd00:198:18::5/64", "gateway": "fd00:198:18::1"},
		},
	}
	for _, b := range []nat.Backend{nat.Legacy, nat.NFT} {
		t.Run(string(b), func(t *testing.T) {
			pod, err := cnitest.NewNetns("mcni-pod")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pod.Delete)
			deps := plugin.Real()
			real := deps.NewTables
			var wrapped *failingV6
			deps.NewTables = func(path string, be nat.Backend) redirect.Tables {
				wrapped = &failingV6{Tables: real(path, be), pod: pod, be: be, t: t}
				return wrapped
			}
			conf, _ := json.Marshal(netconf("1.0.0", map[string]any{"kubeconfig": kc, "iptablesBackend": string(b),
				"logLevel": "error", "prevResult": dualStack}))
			_, err = (&plugin.Plugin{Deps: deps}).AddResult(&skel.CmdArgs{ContainerID: "ctr1", Netns: pod.Path(), IfName: "eth0",
				Args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + podName, StdinData: conf})
			cerr := cniError(t, err)
			if cerr.Code != plugin.CodeProgramming || !strings.Contains(cerr.Msg, "MESH_CNI_NO_SUCH_CHAIN") && !strings.Contains(cerr.Msg, "IPv6") {
				t.Errorf("ADD error: %d %s", cerr.Code, cerr.Msg)
			}
			if wrapped == nil || len(wrapped.v4AtFailure) != 4 {
				t.Fatalf("the fault did not meet a programmed IPv4 table (IPv4 held %v)", wrapped.v4AtFailure)
			}
			for _, tool := range []string{"iptables-" + string(b) + "-save", "ip6tables-" + string(b) + "-save"} {
				out, err := pod.Output(tool, "-t", "nat")
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(out, "ISTIO_") {
					t.Errorf("after the failed ADD %s shows mesh rules:\n%s", tool, out)
				}
			}
		})
	}
}
