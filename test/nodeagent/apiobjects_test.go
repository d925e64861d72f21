package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meshcni/mesh-cni/test/apitest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// The API objects and identities the least-privilege tests (taint_test.go,
// repair_test.go) share.

func tokenClient(t *testing.T, token string) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: api.URL, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func adminClient(t *testing.T) kubernetes.Interface {
	return tokenClient(t, api.Users[apitest.AdminUser].Token)
}

// createDeployObjects creates the RBAC and admission policy objects of
// deploy/'s files as shipped (read from the files, never retyped, decoded
// strictly) and returns what deletes them again.
func createDeployObjects(t *testing.T, files ...string) (undo func()) {
	t.Helper()
	ctx := context.Background()
	adm := adminClient(t)
	var undos []func()
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(cnitest.RepoRoot(), "deploy", f))
		mustOK(t, err)
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			var meta metav1.TypeMeta
			mustOK(t, yaml.Unmarshal([]byte(doc), &meta))
			strict := func(into any) { t.Helper(); mustOK(t, yaml.UnmarshalStrict([]byte(doc), into)) }
			del := metav1.DeleteOptions{}
			switch meta.Kind {
			case "ClusterRole":
				var o rbacv1.ClusterRole
				strict(&o)
				_, err = adm.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
				undos = append(undos, func() { _ = adm.RbacV1().ClusterRoles().Delete(ctx, o.Name, del) })
			case "ClusterRoleBinding":
				var o rbacv1.ClusterRoleBinding
				strict(&o)
				_, err = adm.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
				undos = append(undos, func() { _ = adm.RbacV1().ClusterRoleBindings().Delete(ctx, o.Name, del) })
			case "ValidatingAdmissionPolicy":
				var o admissionv1.ValidatingAdmissionPolicy
				strict(&o)
				_, err = adm.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &o, metav1.CreateOptions{})
				undos = append(undos, func() { _ = adm.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, o.Name, del) })
			case "ValidatingAdmissionPolicyBinding":
				var o admissionv1.ValidatingAdmissionPolicyBinding
				strict(&o)
				_, err = adm.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &o, metav1.CreateOptions{})
				undos = append(undos, func() {
					_ = adm.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, o.Name, del)
				})
			default:
				t.Fatalf("deploy/%s: unexpected kind %q", f, meta.Kind)
			}
			if err != nil {
				t.Fatalf("deploy/%s %s: %v", f, meta.Kind, err)
			}
		}
	}
	return func() {
		for _, u := range undos {
			u()
		}
	}
}

// nodeToken mints a token of the DaemonSet's service account bound to the
// Node name (uid: optional), and checks the API server put the node in its
// user info, which the policies read.
func nodeToken(t *testing.T, name string, uid types.UID) string {
	t.Helper()
	tr, err := adminClient(t).CoreV1().ServiceAccounts(dsNamespace).CreateToken(context.Background(), "mesh-cni",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600)),
			BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: name, UID: uid}}},
		metav1.CreateOptions{})
	mustOK(t, err)
	if _, extra, err := whoAmI(t, tr.Status.Token); err != nil || len(extra["authentication.kubernetes.io/node-name"]) != 1 {
		t.Fatalf("token not bound to %s: %v %v", name, extra, err)
	}
	return tr.Status.Token
}

func ptr[T any](v T) *T { return &v }

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
