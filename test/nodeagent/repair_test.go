package nodeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/repair"
)

// The repair controller's least privilege (deploy/clusterrole-repair.yaml
// and deploy/vap-repair.yaml, applied as shipped) and the controller itself
// (the real install-cni) on the real API server, with tokens the API server
// minted for the DaemonSet's service account bound to a Node.

// applyRepairPolicy creates deploy/'s repair RBAC and policy as shipped,
// removed after the test, and waits until the API server enforces the
// policy (probe is refused by it).
func applyRepairPolicy(t *testing.T, probe func() error) {
	t.Helper()
	t.Cleanup(createDeployObjects(t, "clusterrole-repair.yaml", "vap-repair.yaml"))
	eventually(t, 30*time.Second, "the repair policy enforced", func() (bool, string) {
		err := probe()
		return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "mesh-cni repair"), fmt.Sprint(err)
	})
}

// rpPod creates a running sidecar pod on node (status as a kubelet would
// set it: Running, an IP, the sandbox's network ready) and force-deletes it
// after the test.
func rpPod(t *testing.T, name, node string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	adm := adminClient(t)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": name},
			Annotations: map[string]string{"note": "x"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{
			{Name: "app", Image: "app:1"}, {Name: "istio-proxy", Image: "proxy:1", Args: []string{"proxy", "sidecar"}}}},
	}
	p, err := adm.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	})
	return p
}

func rpRun(t *testing.T, p *corev1.Pod, ip string) *corev1.Pod {
	t.Helper()
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.Now()}}}
	out, err := adminClient(t).CoreV1().Pods("default").UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rpLabelPatch(key, val string) []byte {
	return []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, key, val))
}

// rpGrantPatch binds what components/repair-label grants (pods patch) to
// the DaemonSet's service account for the rest of the test.
func rpGrantPatch(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	adm := adminClient(t)
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "mesh-cni-repair-label-test"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"patch"}}}}
	bind := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "mesh-cni", Namespace: dsNamespace}}}
	if _, err := adm.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.RbacV1().ClusterRoleBindings().Create(ctx, bind, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.RbacV1().ClusterRoleBindings().Delete(ctx, bind.Name, metav1.DeleteOptions{})
		_ = adm.RbacV1().ClusterRoles().Delete(ctx, role.Name, metav1.DeleteOptions{})
	})
}

func wantForbidden(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: %v, want 403 naming %q", what, err, msg)
	}
}

// TestRepairPolicy: the agent's service account may delete (base) or
// label (label mode) only the pods of the node its token is bound to, and
// a patch may change nothing but mesh-cni.io/unmeshed.
func TestRepairPolicy(t *testing.T) {
	requireAPI(t)
	ctx := context.Background()
	const own, other = "repair-node-own", "repair-node-other"
	createNode(t, own)
	createNode(t, other)
	tok := nodeToken(t, own, "")
	agent := tokenClient(t, tok).CoreV1().Pods("default")
	adm := adminClient(t).CoreV1().Pods("default")
	elsewhere := rpPod(t, "rp-elsewhere", other)
	dry := metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}
	applyRepairPolicy(t, func() error { return agent.Delete(ctx, elsewhere.Name, dry) })

	t.Run("delete on another node refused", func(t *testing.T) {
		wantForbidden(t, "delete", agent.Delete(ctx, elsewhere.Name, metav1.DeleteOptions{}), "not on node "+own)
		if p, err := adm.Get(ctx, elsewhere.Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
			t.Fatalf("the pod on the other node was touched: %v", err)
		}
	})
	t.Run("a token bound to no node refused", func(t *testing.T) {
		mine := rpPod(t, "rp-static", own)
		static := tokenClient(t, api.Users[dsUser].Token).CoreV1().Pods("default")
		wantForbidden(t, "delete with a static token", static.Delete(ctx, mine.Name, dry), "bound to no node")
	})
	t.Run("base (delete mode): no patch", func(t *testing.T) {
		mine := rpPod(t, "rp-nopatch", own)
		_, err := agent.Patch(ctx, mine.Name, types.MergePatchType, rpLabelPatch(repair.LabelUnmeshed, "true"), metav1.PatchOptions{})
		wantForbidden(t, "label patch with the base role", err, "cannot patch")
	})
	t.Run("delete on its own node allowed, UID precondition", func(t *testing.T) {
		mine := rpPod(t, "rp-delete", own)
		wrong := types.UID("not-" + string(mine.UID))
		if err := agent.Delete(ctx, mine.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &wrong}}); !apierrors.IsConflict(err) {
			t.Fatalf("delete with another UID: %v, want 409", err)
		}
		if err := agent.Delete(ctx, mine.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &mine.UID}}); err != nil {
			t.Fatalf("delete on its own node: %v", err)
		}
		p, err := adm.Get(ctx, mine.Name, metav1.GetOptions{})
		if err == nil && p.DeletionTimestamp == nil {
			t.Fatal("pod not being deleted")
		}
	})

	rpGrantPatch(t)
	t.Run("label mode", func(t *testing.T) {
		mine := rpPod(t, "rp-label", own)
		patch := func(p []byte) error {
			_, err := agent.Patch(ctx, mine.Name, types.MergePatchType, p, metav1.PatchOptions{})
			return err
		}
		eventually(t, 10*time.Second, "patch RBAC in effect", func() (bool, string) {
			err := patch(rpLabelPatch(repair.LabelUnmeshed, "true"))
			return err == nil, fmt.Sprint(err)
		})
		p, _ := adm.Get(ctx, mine.Name, metav1.GetOptions{})
		if p.Labels[repair.LabelUnmeshed] != "true" || p.UID != mine.UID {
			t.Fatalf("labels %v", p.Labels)
		}
		for _, c := range []struct{ what, patch, msg string }{
			{"another label", `{"metadata":{"labels":{"app":"evil"}}}`, "no label but"},
			{"a label removed", `{"metadata":{"labels":{"app":null}}}`, "no label but"},
			{"a new label", `{"metadata":{"labels":{"extra":"1"}}}`, "no label but"},
			{"our label with another value", `{"metadata":{"labels":{"mesh-cni.io/unmeshed":"no"}}}`, "no label but"},
			{"our label and another", `{"metadata":{"labels":{"mesh-cni.io/unmeshed":"true","app":"evil"}}}`, "no label but"},
			{"an annotation", `{"metadata":{"annotations":{"note":"y"}}}`, "annotations"},
			{"a finalizer", `{"metadata":{"finalizers":["example.com/hold"]}}`, "finalizers"},
			{"the spec", `{"spec":{"activeDeadlineSeconds":5}}`, "spec"},
		} {
			wantForbidden(t, c.what, patch([]byte(c.patch)), c.msg)
		}
		_, err := agent.Patch(ctx, elsewhere.Name, types.MergePatchType, rpLabelPatch(repair.LabelUnmeshed, "true"), metav1.PatchOptions{})
		wantForbidden(t, "label a pod of another node", err, "not on node "+own)
		after, _ := adm.Get(ctx, mine.Name, metav1.GetOptions{})
		if after.Labels["app"] != "rp-label" || after.Annotations["note"] != "x" || len(after.Finalizers) != 0 || after.Spec.ActiveDeadlineSeconds != nil {
			t.Fatalf("a refused patch changed the pod: %+v", after.ObjectMeta)
		}
	})
	t.Run("other identities are not matched", func(t *testing.T) {
		if _, err := adm.Patch(ctx, elsewhere.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"note":"admin"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("admin's patch refused: %v", err)
		}
	})
}

// rpKubeconfig is a kubeconfig with token.
func rpKubeconfig(t *testing.T, dir, token string) string {
	t.Helper()
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster: {server: %q, insecure-skip-tls-verify: true}\n"+
		"users:\n- name: u\n  user: {token: %q}\ncontexts:\n- name: a\n  context: {cluster: a, user: u}\ncurrent-context: a\n", api.URL, token)
	p := filepath.Join(dir, "node-bound.kubeconfig")
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRepairController: the real install-cni, as the DaemonSet's service
// account with a node-bound token, deletes (then labels) the unmeshed pod of
// its node and posts the Events; a pod the real plug-in's ADD redirected
// (its record in the records dir) and a pod of another node are left alone.
func TestRepairController(t *testing.T) {
	requireAPI(t)
	ctx := context.Background()
	const node, other = "repair-ctl-node", "repair-ctl-other"
	createNode(t, node)
	createNode(t, other)
	tok := nodeToken(t, node, "")
	adm := adminClient(t).CoreV1().Pods("default")
	elsewhere := rpRun(t, rpPod(t, "rc-elsewhere", other), "10.9.0.9")
	applyRepairPolicy(t, func() error {
		return tokenClient(t, tok).CoreV1().Pods("default").Delete(ctx, elsewhere.Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
	})

	dir := t.TempDir()
	records := filepath.Join(dir, "sandboxes")
	kc := rpKubeconfig(t, dir, tok)
	meshed := rpPod(t, "rc-meshed", node)
	unmeshed := rpPod(t, "rc-unmeshed", node)

	a := startAgentWith(t, dir, filepath.Join(dir, "run", "agent.sock"), kc, agentOpts{
		args: []string{"--node-name=" + node, "--sandbox-dir=" + records, "--repair-mode=delete"}})
	a.waitReady(t)
	// The real plug-in's ADD for the meshed pod, while it is still Pending
	// (as on a node): it records the sandbox as redirected.
	pluginKC, err := api.WriteKubeconfig(dir, pluginUser)
	if err != nil {
		t.Fatal(err)
	}
	netns := newNetns(t)
	add := cniCall{verb: "ADD", podName: meshed.Name, uid: string(meshed.UID), kubeconfig: pluginKC, socket: a.socket,
		extra: fmt.Sprintf(`,"sandboxDir":%q`, records), netns: netns}
	if out, err := add.run(t); err != nil {
		t.Fatalf("ADD: %v %s", err, out)
	}
	if !redirected(t, netns) {
		t.Fatal("ADD did not redirect the meshed pod")
	}
	t.Cleanup(func() { del := add; del.verb = "DEL"; _, _ = del.run(t) })
	rpRun(t, meshed, "10.9.0.1")
	rpRun(t, unmeshed, "10.9.0.2")

	eventually(t, 20*time.Second, "the unmeshed pod deleted", func() (bool, string) {
		p, err := adm.Get(ctx, unmeshed.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || err == nil && p.DeletionTimestamp != nil, fmt.Sprint(err)
	})
	warn := waitEvent(t, unmeshed.Name, repair.ReasonUnmeshed)
	if warn.Type != corev1.EventTypeWarning || warn.InvolvedObject.UID != string(unmeshed.UID) ||
		!strings.Contains(warn.Message, "no ADD record") || !strings.Contains(warn.Message, "repair mode delete") {
		t.Fatalf("Unmeshed Event %+v", warn)
	}
	if ev := waitEvent(t, unmeshed.Name, repair.ReasonDeleted); ev.Type != corev1.EventTypeNormal {
		t.Fatalf("%+v", ev)
	}
	if m := a.metrics(t); !strings.Contains(m, `mesh_cni_agent_repairs_total{mode="delete",result="success"} 1`) {
		t.Fatalf("metrics:\n%s", grepLines(m, "mesh_cni_agent_repairs_total"))
	}
	for _, name := range []string{meshed.Name, elsewhere.Name} {
		p, err := adm.Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp != nil {
			t.Fatalf("%s was deleted: %v", name, err)
		}
		if ev := events(t, name, repair.ReasonUnmeshed); len(ev) != 0 {
			t.Fatalf("%s flagged: %+v", name, ev)
		}
	}

	// Label mode: the same agent identity with components/repair-label's
	// right; the pod keeps its UID and gets the label only.
	a.stop(t, 15)
	rpGrantPatch(t)
	lab := rpRun(t, rpPod(t, "rc-label", node), "10.9.0.3")
	b := startAgentWith(t, dir, filepath.Join(dir, "run", "agent.sock"), kc, agentOpts{
		args: []string{"--node-name=" + node, "--sandbox-dir=" + records, "--repair-mode=label"}})
	b.waitReady(t)
	eventually(t, 20*time.Second, "the unmeshed pod labelled", func() (bool, string) {
		p, err := adm.Get(ctx, lab.Name, metav1.GetOptions{})
		return err == nil && p.Labels[repair.LabelUnmeshed] == "true", fmt.Sprint(err)
	})
	p, _ := adm.Get(ctx, lab.Name, metav1.GetOptions{})
	if p.UID != lab.UID || p.DeletionTimestamp != nil || p.Labels["app"] != "rc-label" || len(p.Labels) != 2 || p.Annotations["note"] != "x" {
		t.Fatalf("the labelled pod was changed otherwise: %+v", p.ObjectMeta)
	}
	waitEvent(t, lab.Name, repair.ReasonLabeled)
	if m := b.metrics(t); !strings.Contains(m, "mesh_cni_agent_unmeshed_pods 1") {
		t.Fatalf("gauge:\n%s", grepLines(m, "mesh_cni_agent_unmeshed_pods"))
	}
	if !strings.Contains(b.stderr.String()+b.stdout.String(), "sinceActiveMs") {
		t.Fatal("no handled log line")
	}
}
