package netns

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// The real mesh-cni binary, built on first use next to the stand-in (TestMain
// removes that directory): races between processes are raced by processes.
var (
	meshOnce sync.Once
	meshBin  string
	meshErr  error
)

func meshCNI(t testing.TB) string {
	t.Helper()
	meshOnce.Do(func() {
		meshBin, meshErr = cnitest.BuildBinary(filepath.Dir(standin), "./cmd/mesh-cni", "mesh-cni")
	})
	if meshErr != nil {
		t.Fatal(meshErr)
	}
	return meshBin
}

// plugin runs the built binary the way a runtime does, against a pod
// server in the host netns (where the test and the plug-in run).
type plugin struct {
	bin, dir, kubeconfig string
	backend              nat.Backend
	srv                  *cnitest.PodServer
}

func newPlugin(t *testing.T, b nat.Backend, pods ...*corev1.Pod) *plugin {
	t.Helper()
	p := &plugin{bin: meshCNI(t), dir: t.TempDir(), backend: b}
	p.srv = cnitest.NewPodServer(pods...)
	t.Cleanup(p.srv.Close)
	var err error
	if p.kubeconfig, err = p.srv.WriteKubeconfig(p.dir); err != nil {
		t.Fatal(err)
	}
	return p
}

// cmd is one CNI invocation for the pod default/name in netns n.
func (p *plugin) cmd(verb string, n *cnitest.Netns, name string) *exec.Cmd {
	conf, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "mesh-test", "type": "mesh-cni",
		"kubeconfig": p.kubeconfig, "iptablesBackend": string(p.backend),
		"logFile": filepath.Join(p.dir, "mesh-cni.log"), "sandboxDir": filepath.Join(p.dir, "sandboxes"),
		"prevResult": map[string]any{"cniVersion": "1.0.0",
			"interfaces": []any{map[string]any{"name": "eth0", "sandbox": n.Path()}},
			"ips":        []any{map[string]any{"interface": 0, "address": "198.18.0.5/24"}},
		},
	})
	cmd := exec.Command(p.bin)
	cmd.Env = []string{
		"CNI_COMMAND=" + verb, "CNI_CONTAINERID=ctr-" + n.Name, "CNI_NETNS=" + n.Path(),
		"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(p.bin),
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + name,
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	cmd.Stdin = bytes.NewReader(conf)
	return cmd
}

// run runs the invocation and returns its error with stdout and stderr.
func run(cmd *exec.Cmd) error {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: stdout %s stderr %s", cmd.Env[0], err, out.String(), errb.String())
	}
	return nil
}

// seedReference is what the kernel holds after loading the seed's own
// restore input — our rules for the seed pod, exactly once — read back with
// kernelRules. It is independent of the code under test.
func seedReference(t *testing.T, b nat.Backend) []string {
	t.Helper()
	restore, err := redirecttest.SeedRestore()
	if err != nil {
		t.Fatal(err)
	}
	ref := newNetns(t, "mcni-ref")
	tb := tablesFor(ref, b)
	if err := tb.Restore(redirect.IPv4, restore); err != nil {
		t.Fatal(err)
	}
	return kernelRules(t, tb, redirect.IPv4)
}

// holdsExactly says how the netns's nat table differs from want
// (kernelRules form), or how the plug-in's own CHECK disagrees; nil when
// it holds exactly want.
func holdsExactly(t *testing.T, p *plugin, n *cnitest.Netns, name string, want []string) error {
	t.Helper()
	if got := kernelRules(t, tablesFor(n, p.backend), redirect.IPv4); !slices.Equal(got, want) {
		return fmt.Errorf("%s holds\n  %s\nwant\n  %s", n.Name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if err := run(p.cmd("CHECK", n, name)); err != nil {
		return fmt.Errorf("CHECK after ADD: %w", err)
	}
	return nil
}
