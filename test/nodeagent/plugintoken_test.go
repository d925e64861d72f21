package nodeagent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/installer"
	"github.com/meshcni/mesh-cni/test/apitest"
)

// The plug-in's own identity (deploy/serviceaccount-plugin.yaml): install-cni
// running as the DaemonSet's service account mints a token for
// mesh-cni-plugin with the TokenRequest API and writes it where the
// plug-in's kubeconfig points. These tests ask the real API server what that
// token, and the DaemonSet's identity, may do.

// createNode creates a Node object (what the plug-in's token is bound to)
// and removes it after the test.
func createNode(t *testing.T, name string) {
	t.Helper()
	n := map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": name}}
	if err := api.Do(context.Background(), apitest.AdminUser, "POST", "/api/v1/nodes", n, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Do(context.Background(), apitest.AdminUser, "DELETE", "/api/v1/nodes/"+name, nil, nil) })
}

// whoAmI is the API server's view of a token (SelfSubjectReview).
func whoAmI(t *testing.T, token string) (string, map[string][]string, error) {
	t.Helper()
	var rev struct {
		Status struct {
			UserInfo struct {
				Username string
				Extra    map[string][]string
			} `json:"userInfo"`
		}
	}
	err := api.DoToken(context.Background(), token, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
		map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, &rev)
	return rev.Status.UserInfo.Username, rev.Status.UserInfo.Extra, err
}

func tokenRequest(sa string) (string, map[string]any) {
	return sa, map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
		"spec": map[string]any{"expirationSeconds": 600}}
}

func createSA(t *testing.T, ns, name string) {
	t.Helper()
	sa := map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": name, "namespace": ns}}
	if err := api.Do(context.Background(), apitest.AdminUser, "POST", "/api/v1/namespaces/"+ns+"/serviceaccounts", sa, nil); err != nil {
		t.Fatal(err)
	}
}

// jwtClaims reads a token's payload (the API server verified it already).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token is no JWT (%d parts)", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPluginTokenLeastPrivilege: the token install-cni writes for the
// plug-in authenticates as mesh-cni-plugin, bound to the node, for one hour;
// it may get pods (the plug-in's fallback ADD works with the kubeconfig as
// written) and nothing else; the DaemonSet's identity may mint that token
// and no other; the token dies with the Node object.
func TestPluginTokenLeastPrivilege(t *testing.T) {
	requireAPI(t)
	ctx := context.Background()
	dir := t.TempDir()
	ca, err := api.ServingCA()
	if err != nil {
		t.Fatal(err)
	}
	const node = "node-tok"
	createNode(t, node)
	kc, err := api.WriteKubeconfig(dir, dsUser)
	if err != nil {
		t.Fatal(err)
	}
	a := startAgentWith(t, dir, filepath.Join(dir, "run", "agent.sock"), kc, agentOpts{ca: ca,
		args: []string{"--plugin-service-account=" + pluginSA, "--node-name=" + node},
		env:  []string{"POD_NAMESPACE=" + dsNamespace}})
	a.waitReady(t)

	tokPath := filepath.Join(dir, "net.d", installer.TokenName)
	st, err := os.Stat(tokPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v (mode %v), want 0600", tokPath, err, st)
	}
	raw, _ := os.ReadFile(tokPath)
	tok := string(raw)
	user, extra, err := whoAmI(t, tok)
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + dsNamespace + ":" + pluginSA; user != want {
		t.Fatalf("the plug-in's token authenticates as %q, want %q", user, want)
	}
	if got := extra["authentication.kubernetes.io/node-name"]; len(got) != 1 || got[0] != node {
		t.Errorf("token not bound to node %s: extra %v", node, extra)
	}
	c := jwtClaims(t, tok)
	if life := c["exp"].(float64) - c["iat"].(float64); life != 3600 {
		t.Errorf("token lifetime %vs, want 3600", life)
	}
	if auds, _ := c["aud"].([]any); len(auds) != 1 || auds[0] != "https://kubernetes.default.svc" {
		t.Errorf("audience %v, want the API server's default", c["aud"])
	}

	podUID := createPod(t, "tokpod", nodeName, nil)
	t.Run("the plug-in's token: get pods and nothing else", func(t *testing.T) {
		if err := api.DoToken(ctx, tok, "GET", "/api/v1/namespaces/default/pods/tokpod", nil, nil); err != nil {
			t.Fatalf("get pod refused: %v", err)
		}
		for _, r := range [][2]string{
			{"GET", "/api/v1/namespaces/default/pods"},
			{"GET", "/api/v1/pods"},
			{"GET", "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1"},
			{"POST", "/api/v1/namespaces/default/events"},
			{"GET", "/api/v1/namespaces/default/secrets/anything"},
			{"GET", "/api/v1/secrets"},
			{"DELETE", "/api/v1/namespaces/default/pods/tokpod"},
			{"POST", "/api/v1/namespaces/" + dsNamespace + "/serviceaccounts/" + pluginSA + "/token"},
		} {
			var body any
			if r[0] == "POST" {
				body = map[string]any{"apiVersion": "v1", "kind": "Event", "metadata": map[string]any{"name": "x"}}
			}
			if err := api.DoToken(ctx, tok, r[0], r[1], body, nil); apitest.Code(err) != 403 {
				t.Errorf("%s %s with the plug-in's token: %v, want 403", r[0], r[1], err)
			}
		}
	})

	t.Run("the plug-in's fallback GET works with the kubeconfig as written", func(t *testing.T) {
		gets := func() int {
			n, err := api.PodGets("system:serviceaccount:" + dsNamespace + ":" + pluginSA)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		before := gets()
		ns := newNetns(t)
		// No agent socket: the plug-in reads the pod itself.
		if _, err := (cniCall{verb: "ADD", podName: "tokpod", uid: podUID, kubeconfig: filepath.Join(dir, "net.d", installer.KubeconfigName),
			socket: "", netns: ns}).run(t); err != nil {
			t.Fatal(err)
		}
		if !redirected(t, ns) {
			t.Fatal("no redirect programmed")
		}
		if gets()-before != 1 {
			t.Fatalf("the API server recorded %d pod GETs by the plug-in's service account, want 1", gets()-before)
		}
	})

	t.Run("the DaemonSet's identity mints the plug-in's token only", func(t *testing.T) {
		createSA(t, dsNamespace, "other")
		createSA(t, "default", pluginSA)
		ns, body := tokenRequest(pluginSA)
		if err := api.Do(ctx, dsUser, "POST", "/api/v1/namespaces/"+dsNamespace+"/serviceaccounts/"+ns+"/token", body, nil); err != nil {
			t.Fatalf("control: the DaemonSet cannot mint the plug-in's token: %v", err)
		}
		for _, p := range []string{
			"/api/v1/namespaces/" + dsNamespace + "/serviceaccounts/other/token",
			"/api/v1/namespaces/" + dsNamespace + "/serviceaccounts/mesh-cni/token",
			"/api/v1/namespaces/default/serviceaccounts/" + pluginSA + "/token",
		} {
			if err := api.Do(ctx, dsUser, "POST", p, body, nil); apitest.Code(err) != 403 {
				t.Errorf("POST %s as the DaemonSet: %v, want 403", p, err)
			}
		}
		for _, p := range []string{"/api/v1/namespaces/default/pods/tokpod", "/api/v1/namespaces/" + dsNamespace + "/secrets",
			"/api/v1/namespaces/" + dsNamespace + "/serviceaccounts/" + pluginSA} {
			if err := api.Do(ctx, dsUser, "GET", p, nil, nil); apitest.Code(err) != 403 {
				t.Errorf("GET %s as the DaemonSet: %v, want 403", p, err)
			}
		}
	})

	t.Run("the token dies with its Node object", func(t *testing.T) {
		if err := api.Do(ctx, apitest.AdminUser, "DELETE", "/api/v1/nodes/"+node, nil, nil); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "token refused after its node is gone", func() (bool, string) {
			_, _, err := whoAmI(t, tok)
			return apitest.Code(err) == 401, ""
		})
	})
}

// TestPluginTokenForbidden: an identity without the Role that lets it mint
// the plug-in's token leaves the node not ready, writes no token, and says
// why in its log and metrics.
func TestPluginTokenForbidden(t *testing.T) {
	requireAPI(t)
	dir := t.TempDir()
	a := startAgentWith(t, dir, filepath.Join(dir, "run", "agent.sock"), "", agentOpts{
		args: []string{"--plugin-service-account=" + pluginSA}, env: []string{"POD_NAMESPACE=" + dsNamespace}})
	eventually(t, 20*time.Second, "forbidden TokenRequests counted", func() (bool, string) {
		resp, err := http.Get("http://" + a.health + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := string(b)
		return strings.Contains(m, `mesh_cni_plugin_token_requests_total{result="forbidden"} `) &&
			!strings.Contains(m, `mesh_cni_plugin_token_requests_total{result="forbidden"} 0`), m
	})
	eventually(t, 10*time.Second, "/readyz not ready because of the plug-in token", func() (bool, string) {
		code, body := a.readyz()
		if code == 200 {
			t.Fatalf("/readyz 200 without a plug-in token: %s", body)
		}
		return strings.Contains(body, "plug-in token"), body
	})
	if _, err := os.Stat(filepath.Join(dir, "net.d", installer.TokenName)); !os.IsNotExist(err) {
		t.Fatalf("a token file was written without a token: %v", err)
	}
	if !strings.Contains(a.stderr.String(), "TokenRequest forbidden") {
		t.Fatalf("the log does not say the TokenRequest is forbidden:\n%s", a.stderr)
	}
}
