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
	"strings"
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
	// dsUser is the DaemonSet's service account as the API server names
	// it: deploy/'s bindings to that ServiceAccount apply to this static
	// identity as shipped (RBAC matches service accounts by user name).
	dsNamespace = "mesh-cni-system"
	dsUser      = "system:serviceaccount:" + dsNamespace + ":mesh-cni"
	pluginSA    = "mesh-cni-plugin"
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
	api, err = apitest.Start(apiDir, pluginUser, agentUser, dsUser)
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

// grantDeployRole applies deploy/'s namespace, service accounts and RBAC
// as shipped (they bind dsUser and the plug-in's service account), and binds
// the shipped roles to the tests' static identities too: the plug-in's role
// to pluginUser, the DaemonSet's to agentUser. The tests prove the roles
// are enough.
func grantDeployRole() error {
	ctx := context.Background()
	roles := map[string]string{} // file -> ClusterRole name
	for _, f := range deployRBACFiles {
		raw, err := os.ReadFile(filepath.Join(cnitest.RepoRoot(), "deploy", f))
		if err != nil {
			return err
		}
		var obj map[string]any
		if err := yaml.Unmarshal(raw, &obj); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		meta := obj["metadata"].(map[string]any)
		ns, _ := meta["namespace"].(string)
		path, err := collectionPath(obj["kind"].(string), ns)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if err := api.Do(ctx, apitest.AdminUser, "POST", path, obj, nil); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if obj["kind"] == "ClusterRole" {
			roles[f] = meta["name"].(string)
		}
	}
	for user, role := range map[string]string{pluginUser: roles["clusterrole-plugin.yaml"], agentUser: roles["clusterrole.yaml"]} {
		binding := map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": map[string]any{"name": "mesh-cni-test-" + user},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
			"subjects": []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}},
		}
		if err := api.Do(ctx, apitest.AdminUser, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding, nil); err != nil {
			return err
		}
	}
	return nil
}

// deployRBACFiles are deploy/'s identity objects, in creation order.
var deployRBACFiles = []string{"namespace.yaml", "serviceaccount.yaml", "serviceaccount-plugin.yaml",
	"clusterrole.yaml", "clusterrolebinding.yaml", "clusterrole-plugin.yaml", "clusterrolebinding-plugin.yaml",
	"role-plugin-token.yaml", "rolebinding-plugin-token.yaml"}

func collectionPath(kind, ns string) (string, error) {
	switch kind {
	case "Namespace":
		return "/api/v1/namespaces", nil
	case "ServiceAccount":
		return "/api/v1/namespaces/" + ns + "/serviceaccounts", nil
	case "ClusterRole", "ClusterRoleBinding":
		return "/apis/rbac.authorization.k8s.io/v1/" + strings.ToLower(kind) + "s", nil
	case "Role", "RoleBinding":
		return "/apis/rbac.authorization.k8s.io/v1/namespaces/" + ns + "/" + strings.ToLower(kind) + "s", nil
	}
	return "", fmt.Errorf("kind %s not handled", kind)
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
