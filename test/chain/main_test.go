// Package chain runs the built mesh-cni binary the way a container runtime
// does: through libcni, after Debian's bridge and host-local reference
// plug-ins, with the pod served to client-go over HTTP.
package chain

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

var binDir string // holds the built mesh-cni

func TestMain(m *testing.M) {
	if why := cnitest.RequireRoot(); why != "" {
		os.Stderr.WriteString("test/chain " + why + "\n")
		os.Exit(1)
	}
	if _, err := os.Stat(cnitest.DebianPluginDir + "/bridge"); err != nil {
		os.Stderr.WriteString("test/chain needs Debian's containernetworking-plugins (make test installs it)\n")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "mesh-cni-chain-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	if _, err := cnitest.BuildBinary(dir, "./cmd/mesh-cni", "mesh-cni"); err != nil {
		os.RemoveAll(dir)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's chain, pod server and pod netns, all removed at the end.
type env struct {
	t      *testing.T
	srv    *cnitest.PodServer
	chain  *cnitest.Chain
	kc     string
	dir    string
	podsNS []*cnitest.Netns
}

func newEnv(t *testing.T, cniVersion string, mesh map[string]any, pods ...*corev1.Pod) *env {
	t.Helper()
	return newEnvWith(t, cnitest.ChainOptions{CNIVersion: cniVersion}, mesh, pods...)
}

// newEnvWith is newEnv with the chain's options (MeshConf and MeshBinDir
// are filled in).
func newEnvWith(t *testing.T, o cnitest.ChainOptions, mesh map[string]any, pods ...*corev1.Pod) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.kc = filepath.Join(e.dir, cnitest.KubeconfigName)
	conf := map[string]any{"kubeconfig": e.kc, "logLevel": "debug", "logFile": e.dir + "/mesh-cni.log"}
	for k, v := range mesh {
		conf[k] = v
	}
	var err error
	o.MeshConf, o.MeshBinDir = conf, binDir
	e.chain, err = cnitest.NewChain(e.dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.chain.Close)
	// The plug-in runs in the chain's node netns: serve the pods there.
	if e.srv, err = cnitest.NewPodServerIn(e.chain.Node.Path(), pods...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.srv.Close)
	if _, err := e.srv.WriteKubeconfig(e.dir); err != nil {
		t.Fatal(err)
	}
	return e
}

// pod creates a sandbox netns for a pod of the given namespace/name.
func (e *env) pod(namespace, name string) cnitest.Pod {
	n, err := cnitest.NewNetns("mcni-pod")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(n.Delete)
	return cnitest.Pod{Netns: n, Namespace: namespace, Name: name, ContainerID: "ctr-" + n.Name}
}

// istioChains lists the mesh chains the pod's nat table holds.
func istioChains(t *testing.T, p cnitest.Pod, b nat.Backend) []string {
	t.Helper()
	out, err := p.Netns.Output("iptables-"+string(b)+"-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	var chains []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, ":ISTIO_") {
			chains = append(chains, strings.Fields(l)[0][1:])
		}
	}
	return chains
}

// seedRuleset is what the seed's productpage pod must hold, read from the
// seed's spec (not built by the code under test).
func seedRuleset(t *testing.T) redirect.Ruleset {
	t.Helper()
	rs, err := redirecttest.SeedRuleset()
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// cniError unwraps the error a plug-in printed.
func cniError(t *testing.T, err error) *types.Error {
	t.Helper()
	if err == nil {
		t.Fatal("want a CNI error, got success")
	}
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *types.Error, got %T: %v", err, err)
	}
	return e
}

func logText(t *testing.T, e *env) string {
	b, _ := os.ReadFile(e.dir + "/mesh-cni.log")
	return string(b)
}
