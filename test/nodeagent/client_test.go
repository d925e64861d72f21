package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/k8s"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/test/apitest"
)

// TestPluginClientAgainstAPIServer: the plug-in's own pod GET (pkg/k8s,
// not client-go) against a real kube-apiserver, its serving certificate
// verified with the CA it generated (a file named relative to the
// kubeconfig): the pod as served passes the identity
// check; the server's real 404, 401 and RBAC 403 answers are classified as
// the lookup promises, with the server's message kept; and the audit log
// holds each GET under the identity and User-Agent the plug-in sends.
func TestPluginClientAgainstAPIServer(t *testing.T) {
	requireAPI(t)
	uid := createPod(t, "lean-get", nodeName, nil)
	defer deletePod(t, "lean-get")
	dir := t.TempDir()
	ca, err := api.ServingCA()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := func(user, token string) string {
		kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: real
  cluster: {server: %q, certificate-authority: ca.crt}
users:
- name: u
  user: {tokenFile: token-%s}
contexts:
- name: real
  context: {cluster: real, user: u}
current-context: real
`, api.URL, user)
		if err := os.WriteFile(filepath.Join(dir, "token-"+user), []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, user+".kubeconfig")
		if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	quick := k8s.Retry{Budget: 2 * time.Second, PerRequest: time.Second, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	lookup := func(user, token, name, uid string) (*pod.Pod, error) {
		c, err := k8s.NewClient(kubeconfig(user, token), time.Second)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		return k8s.GetPod(context.Background(), c, pod.Ref{Namespace: "default", Name: name, UID: uid}, quick, quietLog())
	}
	before := podGets(t)

	p, err := lookup(pluginUser, api.Users[pluginUser].Token, "lean-get", uid)
	if err != nil || len(p.Spec.Containers) != 2 || p.Spec.Containers[1].Name != "istio-proxy" {
		t.Fatalf("the pod: %+v, %v", p, err)
	}
	_, err = lookup(pluginUser, api.Users[pluginUser].Token, "lean-get-ghost", "")
	if err == nil || errors.Is(err, k8s.ErrUnavailable) || !strings.Contains(err.Error(), `pods "lean-get-ghost" not found`) {
		t.Errorf("a pod the server does not have: %v", err)
	}
	_, err = lookup(noRoleUser, api.Users[noRoleUser].Token, "lean-get", uid)
	if !errors.Is(err, k8s.ErrUnavailable) || !strings.Contains(err.Error(), "403") ||
		!strings.Contains(err.Error(), `User "`+noRoleUser+`" cannot get resource "pods"`) {
		t.Errorf("RBAC refuses: %v", err)
	}
	_, err = lookup("stranger", "not-a-token", "lean-get", uid)
	if !errors.Is(err, k8s.ErrUnavailable) || !strings.Contains(err.Error(), "401") {
		t.Errorf("unknown token: %v", err)
	}

	// One request each (401 and 403 are final), as the server recorded them.
	if n := podGets(t) - before; n != 2 {
		t.Errorf("%d pod GETs by %s recorded, want 2", n, pluginUser)
	}
	evs, err := api.Audit(func(e apitest.AuditEvent) bool {
		return e.Verb == "get" && e.ObjectRef != nil && e.ObjectRef.Resource == "pods" && strings.HasPrefix(e.ObjectRef.Name, "lean-get")
	})
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string][]int{}
	for _, e := range evs {
		if e.UserAgent != "mesh-cni" {
			t.Errorf("User-Agent %q recorded", e.UserAgent)
		}
		codes[e.User.Username] = append(codes[e.User.Username], e.ResponseStatus.Code)
	}
	if fmt.Sprint(codes[pluginUser]) != "[200 404]" || fmt.Sprint(codes[noRoleUser]) != "[403]" {
		t.Errorf("recorded %v", codes)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
