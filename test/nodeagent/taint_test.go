package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/readiness"
)

// The readiness taint's least privilege (deploy/vap-node-taint.yaml with
// deploy/clusterrole.yaml's nodes get/patch), on the real API server, with
// the DaemonSet's real service account and tokens the API server minted
// bound to a node: the agent may remove mesh-cni.io/not-ready from its own
// node and do nothing else to any Node.

const policyName = "mesh-cni-node-taint"

var (
	ourTaint   = corev1.Taint{Key: readiness.TaintKey, Value: readiness.TaintValue, Effect: readiness.TaintEffect}
	otherTaint = corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}
)

var policyOnce sync.Once

// applyTaintPolicy creates deploy/vap-node-taint.yaml's objects as shipped
// (read from the file, never retyped) and waits until the API server
// enforces them.
func applyTaintPolicy(t *testing.T) {
	t.Helper()
	policyOnce.Do(func() {
		ctx := context.Background()
		// kept for the whole run: every taint test needs it (sync.Once)
		_ = createDeployObjects(t, "vap-node-taint.yaml")
		// Enforced once the static DaemonSet identity (no node in its
		// user info) is refused a label change of a scratch node.
		createNode(t, "taint-probe")
		ds := tokenClient(t, api.Users[dsUser].Token)
		eventually(t, 30*time.Second, "policy enforced", func() (bool, string) {
			_, err := ds.CoreV1().Nodes().Patch(ctx, "taint-probe", types.MergePatchType,
				[]byte(fmt.Sprintf(`{"metadata":{"labels":{"probe":"%d"}}}`, time.Now().UnixNano())), metav1.PatchOptions{})
			return err != nil && strings.Contains(err.Error(), policyName), fmt.Sprint(err)
		})
		p, err := adminClient(t).AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, policyName, metav1.GetOptions{})
		if err == nil && p.Status.TypeChecking != nil {
			for _, w := range p.Status.TypeChecking.ExpressionWarnings {
				t.Logf("policy type-check warning at %s: %s", w.FieldRef, w.Warning)
			}
		}
	})
}

// baselineNode creates (or resets) name with labels, annotations, a
// provider-free spec and two taints: someone else's and ours.
func baselineNode(t *testing.T, name string, taints ...corev1.Taint) *corev1.Node {
	t.Helper()
	ctx := context.Background()
	c := adminClient(t).CoreV1().Nodes()
	n, err := c.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		n, err = c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		t.Cleanup(func() { _ = c.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	mustOK(t, err)
	n.Labels = map[string]string{"pool": "blue"}
	n.Annotations = map[string]string{"note": "kept"}
	n.Finalizers = nil
	n.Spec = corev1.NodeSpec{Taints: taints}
	n, err = c.Update(ctx, n, metav1.UpdateOptions{})
	mustOK(t, err)
	return n
}

// podToken mints the kind of token the DaemonSet pod has (the kubelet's
// projected token): bound to a pod of that service account on node.
func podToken(t *testing.T, node string) string {
	t.Helper()
	ctx := context.Background()
	pods := adminClient(t).CoreV1().Pods(dsNamespace)
	p, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "mesh-cni-node-"},
		Spec: corev1.PodSpec{ServiceAccountName: "mesh-cni", NodeName: node,
			Containers: []corev1.Container{{Name: "install-cni", Image: "mesh-cni/install-cni:dev"}}}}, metav1.CreateOptions{})
	mustOK(t, err)
	t.Cleanup(func() {
		_ = pods.Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	})
	tr, err := adminClient(t).CoreV1().ServiceAccounts(dsNamespace).CreateToken(ctx, "mesh-cni",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600)),
			BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}}},
		metav1.CreateOptions{})
	mustOK(t, err)
	return tr.Status.Token
}

func taintJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestTaintPolicy: what the DaemonSet's identity may do to a Node.
func TestTaintPolicy(t *testing.T) {
	requireAPI(t)
	applyTaintPolicy(t)
	ctx := context.Background()
	const own, other = "taint-a", "taint-b"
	ownNode := baselineNode(t, own, otherTaint, ourTaint)
	baselineNode(t, other, otherTaint, ourTaint)
	tok := nodeToken(t, ownNode.Name, ownNode.UID)
	if user, extra, err := whoAmI(t, tok); err != nil || user != dsUser || fmt.Sprint(extra["authentication.kubernetes.io/node-name"]) != "["+own+"]" {
		t.Fatalf("minted token: %s %v %v", user, extra, err)
	}
	agent := tokenClient(t, tok).CoreV1().Nodes()

	// The lifter's own patch (readiness.RemovalPatch), as it sends it.
	removal := func(t *testing.T, name string) []byte {
		n, err := adminClient(t).CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		mustOK(t, err)
		p, err := readiness.RemovalPatch(n.Spec.Taints)
		mustOK(t, err)
		return p
	}

	t.Run("removing the taint from its own node is allowed and changes nothing else", func(t *testing.T) {
		baselineNode(t, own, otherTaint, ourTaint)
		out, err := agent.Patch(ctx, own, types.JSONPatchType, removal(t, own), metav1.PatchOptions{FieldManager: readiness.FieldManager})
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		got, err := adminClient(t).CoreV1().Nodes().Get(ctx, own, metav1.GetOptions{})
		mustOK(t, err)
		if taintJSON(got.Spec.Taints) != taintJSON([]corev1.Taint{otherTaint}) || got.Labels["pool"] != "blue" ||
			got.Annotations["note"] != "kept" || out.ResourceVersion != got.ResourceVersion {
			t.Errorf("after the removal: taints %s labels %v annotations %v", taintJSON(got.Spec.Taints), got.Labels, got.Annotations)
		}
	})

	t.Run("with the pod-bound token the DaemonSet pod has", func(t *testing.T) {
		baselineNode(t, own, otherTaint, ourTaint)
		ptok := podToken(t, own)
		if _, err := tokenClient(t, ptok).CoreV1().Nodes().Patch(ctx, own, types.JSONPatchType, removal(t, own), metav1.PatchOptions{}); err != nil {
			t.Fatalf("refused: %v", err)
		}
		if got, _ := adminClient(t).CoreV1().Nodes().Get(ctx, own, metav1.GetOptions{}); readiness.HasTaint(got.Spec.Taints) {
			t.Error("taint still there")
		}
	})

	type refusal struct {
		name, node string
		pt         types.PatchType
		patch      func(t *testing.T) []byte
		want       string // in the policy's message
		taints     []corev1.Taint
	}
	static := func(s string) func(*testing.T) []byte { return func(*testing.T) []byte { return []byte(s) } }
	both := []corev1.Taint{otherTaint, ourTaint}
	for _, r := range []refusal{
		{"removing the taint from another node", other, types.JSONPatchType, func(t *testing.T) []byte { return removal(t, other) },
			"the token is bound to node " + own, both},
		{"adding a taint", own, types.JSONPatchType, static(`[{"op":"add","path":"/spec/taints/-","value":{"key":"evil","effect":"NoExecute"}}]`),
			"refused a change of the taints of node " + own, both},
		{"adding the readiness taint back (an agent never cordons)", own, types.JSONPatchType,
			static(`[{"op":"add","path":"/spec/taints/-","value":{"key":"mesh-cni.io/not-ready","value":"true","effect":"NoSchedule"}}]`),
			"it may only remove the taint mesh-cni.io/not-ready", []corev1.Taint{otherTaint}},
		{"changing another taint", own, types.JSONPatchType, static(`[{"op":"replace","path":"/spec/taints/0/value","value":"cpu"}]`),
			"refused a change of the taints", both},
		{"removing another taint", own, types.JSONPatchType, static(`[{"op":"remove","path":"/spec/taints/0"}]`),
			"refused a change of the taints", both},
		{"changing the readiness taint instead of removing it", own, types.JSONPatchType,
			static(`[{"op":"replace","path":"/spec/taints/1/effect","value":"NoExecute"}]`), "refused a change of the taints", both},
		{"removing it together with a label change", own, types.JSONPatchType, func(t *testing.T) []byte {
			var ops []map[string]any
			mustOK(t, json.Unmarshal(removal(t, own), &ops))
			ops = append(ops, map[string]any{"op": "replace", "path": "/metadata/labels/pool", "value": "red"})
			return []byte(taintJSON(ops))
		}, "refused a change of the labels of node " + own, both},
		{"changing a label", own, types.MergePatchType, static(`{"metadata":{"labels":{"pool":"red"}}}`), "labels of node " + own, both},
		{"adding a label", own, types.MergePatchType, static(`{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`), "labels", both},
		{"removing a label", own, types.MergePatchType, static(`{"metadata":{"labels":{"pool":null}}}`), "labels", both},
		{"changing an annotation", own, types.MergePatchType, static(`{"metadata":{"annotations":{"note":"changed"}}}`), "annotations of node " + own, both},
		{"adding a finalizer", own, types.MergePatchType, static(`{"metadata":{"finalizers":["example.com/hold"]}}`), "finalizers", both},
		{"cordoning (spec.unschedulable)", own, types.MergePatchType, static(`{"spec":{"unschedulable":true}}`), "refused a change of spec.unschedulable", both},
		{"setting spec.providerID", own, types.MergePatchType, static(`{"spec":{"providerID":"aws:///x/i-1"}}`), "spec.providerID", both},
		{"setting spec.podCIDR", own, types.MergePatchType, static(`{"spec":{"podCIDR":"10.9.0.0/24","podCIDRs":["10.9.0.0/24"]}}`), "spec.podCIDR", both},
	} {
		t.Run("refused: "+r.name, func(t *testing.T) {
			before := baselineNode(t, r.node, r.taints...)
			if r.node == own {
				// the other node as at the start, for the other-node case
				baselineNode(t, other, otherTaint, ourTaint)
			}
			_, err := agent.Patch(ctx, r.node, r.pt, r.patch(t), metav1.PatchOptions{})
			checkRefused(t, err, r.want)
			checkUnchanged(t, before)
		})
	}

	t.Run("refused: a token bound to no node", func(t *testing.T) {
		// deploy/'s binding names the service account: a static token of
		// that name has its grants, but no node in its user info.
		before := baselineNode(t, own, otherTaint, ourTaint)
		_, err := tokenClient(t, api.Users[dsUser].Token).CoreV1().Nodes().Patch(ctx, own, types.JSONPatchType, removal(t, own), metav1.PatchOptions{})
		checkRefused(t, err, "the token is bound to no node")
		checkUnchanged(t, before)
	})

	t.Run("RBAC: no create, delete, list, update of status", func(t *testing.T) {
		before := baselineNode(t, own, otherTaint, ourTaint)
		errs := map[string]error{}
		_, errs["create"] = agent.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "taint-new"}}, metav1.CreateOptions{})
		errs["delete"] = agent.Delete(ctx, own, metav1.DeleteOptions{})
		_, errs["list"] = agent.List(ctx, metav1.ListOptions{})
		_, errs["patch status"] = agent.Patch(ctx, own, types.MergePatchType, []byte(`{"status":{"capacity":{"pods":"1"}}}`), metav1.PatchOptions{}, "status")
		for verb, err := range errs {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: %v, want forbidden by RBAC", verb, err)
			}
		}
		checkUnchanged(t, before)
	})

	t.Run("refused by the policy too: nodes/status, should a broader role grant it", func(t *testing.T) {
		before := baselineNode(t, own, otherTaint, ourTaint)
		grantStatus(t)
		_, err := agent.Patch(ctx, own, types.MergePatchType, []byte(`{"status":{"capacity":{"pods":"1"}}}`), metav1.PatchOptions{}, "status")
		checkRefused(t, err, "refused nodes/status of "+own)
		checkUnchanged(t, before)
	})
}

// grantStatus gives the DaemonSet's service account patch on nodes/status
// for the test and waits until RBAC says so.
func grantStatus(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	rbac := adminClient(t).RbacV1()
	role, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "taint-test-node-status"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}}}}, metav1.CreateOptions{})
	mustOK(t, err)
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "mesh-cni", Namespace: dsNamespace}}}, metav1.CreateOptions{})
	mustOK(t, err)
	t.Cleanup(func() {
		_ = rbac.ClusterRoleBindings().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
		_ = rbac.ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	eventually(t, 30*time.Second, "nodes/status granted", func() (bool, string) {
		r, err := adminClient(t).AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: dsUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + dsNamespace},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: "patch", Resource: "nodes", Subresource: "status", Name: "x"}}}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed, fmt.Sprint(err)
	})
}

// checkRefused: the API server refused with the policy's message.
func checkRefused(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("allowed; want refused by %s (%s)", policyName, want)
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policyName+"'") ||
		!strings.Contains(err.Error(), want) {
		t.Errorf("refusal %v; want 403 from %s saying %q", err, policyName, want)
	}
	t.Logf("refused: %v", err)
}

// checkUnchanged: the node is as it was (resourceVersion: not written).
func checkUnchanged(t *testing.T, before *corev1.Node) {
	t.Helper()
	got, err := adminClient(t).CoreV1().Nodes().Get(context.Background(), before.Name, metav1.GetOptions{})
	mustOK(t, err)
	if got.ResourceVersion != before.ResourceVersion {
		t.Errorf("node %s was written: taints %s labels %v annotations %v unschedulable %v",
			got.Name, taintJSON(got.Spec.Taints), got.Labels, got.Annotations, got.Spec.Unschedulable)
	}
}

// TestTaintLiftedByAgent: the real install-cni, as the DaemonSet's
// service account with a token bound to its node, keeps the taint while
// the plug-in's STATUS fails (no iptables tools on its PATH), says why,
// and removes it, and only it, once STATUS passes: through deploy/'s RBAC
// and policy, with a Node Event, metrics and a log line.
func TestTaintLiftedByAgent(t *testing.T) {
	requireAPI(t)
	applyTaintPolicy(t)
	ctx := context.Background()
	const name = "taint-agent"
	n := baselineNode(t, name, ourTaint, otherTaint)
	dir := t.TempDir()
	kc := filepath.Join(dir, "agent.kubeconfig")
	mustOK(t, os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, api.URL, nodeToken(t, n.Name, n.UID))), 0o600))
	socket := filepath.Join(dir, "run", "agent.sock")

	noTools := t.TempDir()
	a := startAgentWith(t, dir, socket, kc, agentOpts{args: []string{"--node-name=" + name, "--status-path=" + noTools}})
	eventually(t, 30*time.Second, "not-ready log line naming STATUS", func() (bool, string) {
		return strings.Contains(a.stderr.String(), "plug-in STATUS failed: no iptables-restore"), ""
	})
	if m := a.metrics(t); !strings.Contains(m, "mesh_cni_agent_node_ready 0") {
		t.Errorf("node_ready while STATUS fails:\n%s", grepLines(m, "mesh_cni_agent_"))
	}
	checkUnchanged(t, n)
	a.stop(t, syscall.SIGTERM)

	a = startAgentWith(t, dir, socket, kc, agentOpts{args: []string{"--node-name=" + name, "--status-path=" + os.Getenv("PATH")}})
	eventually(t, 30*time.Second, "taint removed", func() (bool, string) {
		got, err := adminClient(t).CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err == nil && !readiness.HasTaint(got.Spec.Taints), fmt.Sprint(err)
	})
	got, err := adminClient(t).CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	mustOK(t, err)
	if taintJSON(got.Spec.Taints) != taintJSON([]corev1.Taint{otherTaint}) || got.Labels["pool"] != "blue" {
		t.Errorf("after the lift: taints %s labels %v", taintJSON(got.Spec.Taints), got.Labels)
	}
	ev := waitEvent(t, name, readiness.ReasonTaintRemoved)
	if ev.Type != "Normal" || !strings.Contains(ev.Message, readiness.TaintKey) {
		t.Errorf("Event %+v", ev)
	}
	m := a.metrics(t)
	for _, want := range []string{"mesh_cni_agent_readiness_taint_removed_total 1", "mesh_cni_agent_node_ready 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grepLines(m, "mesh_cni_agent_"))
		}
	}
	if !strings.Contains(a.stderr.String(), "readiness taint removed") {
		t.Error("no log line for the lift")
	}
}
