// Package nodeagent runs the real install-cni (with its node agent) and the
// real mesh-cni plug-in against a real etcd + kube-apiserver (test/apitest)
// and asserts on what the API server recorded (audit log, Events) and what
// the kernel holds (the pod netns's nat table).
package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshcni/mesh-cni/test/apitest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

var (
	binDir  string          // built mesh-cni and install-cni
	api     *apitest.Server // nil when the binaries are missing
	skipWhy string
)

// Identities: the plug-in's and the agent's (in a cluster both are the
// DaemonSet's service account; here they are told apart in the audit log),
// and one the API server does not know.
const (
	pluginUser = "mesh-cni-plugin"
	agentUser  = "mesh-cni-agent"
	nodeName   = "node-a"
	// noRoleUser is known to the API server but bound to no role.
	noRoleUser = "mesh-cni-norole"
)

func TestMain(m *testing.M) {
	if why := cnitest.RequireRoot(); why != "" {
		fmt.Fprintln(os.Stderr, "test/nodeagent "+why)
		os.Exit(1)
	}
	skipWhy = apitest.Missing()
	if skipWhy != "" {
		fmt.Fprintln(os.Stderr, "test/nodeagent: SKIPPING the real API server tests: "+skipWhy)
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mesh-cni-nodeagent-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	binDir = filepath.Join(dir, "bin")
	for _, b := range [][2]string{{"./cmd/mesh-cni", "mesh-cni"}, {"./cmd/install-cni", "install-cni"}} {
		if _, err := cnitest.BuildBinary(binDir, b[0], b[1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	apiDir := filepath.Join(dir, "api")
	_ = os.MkdirAll(apiDir, 0o700)
	api, err = apitest.Start(apiDir, pluginUser, agentUser, noRoleUser)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer api.Stop()
	if err := grantDeployRole(); err != nil {
		fmt.Fprintln(os.Stderr, "RBAC from deploy/:", err)
		return 1
	}
	return m.Run()
}

// grantDeployRole applies deploy/clusterrole.yaml as shipped and binds it
// to both identities: the tests prove the role is enough.
func grantDeployRole() error {
	raw, err := os.ReadFile(filepath.Join(cnitest.RepoRoot(), "deploy", "clusterrole.yaml"))
	if err != nil {
		return err
	}
	var role map[string]any
	if err := yaml.Unmarshal(raw, &role); err != nil {
		return err
	}
	ctx := context.Background()
	if err := api.Do(ctx, apitest.AdminUser, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role, nil); err != nil {
		return err
	}
	name := role["metadata"].(map[string]any)["name"]
	binding := map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": "mesh-cni-test"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
		"subjects": []any{
			map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": pluginUser},
			map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": agentUser},
		},
	}
	return api.Do(ctx, apitest.AdminUser, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding, nil)
}

func requireAPI(t *testing.T) {
	t.Helper()
	if api == nil {
		// make test sets this after building what these tests need: there a
		// missing API server is a failure, never a quiet skip.
		if os.Getenv("MESH_CNI_REQUIRE_API") != "" {
			t.Fatal("the real API server is required (MESH_CNI_REQUIRE_API) but cannot run: " + skipWhy)
		}
		t.Skip("real API server tests skipped: " + skipWhy)
	}
}
