package plugin

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// k8sArgs is how plug-ins built on libcni read the same CNI_ARGS.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAME      types.UnmarshallableString //nolint:revive
	K8S_POD_UID       types.UnmarshallableString //nolint:revive
}

// FuzzParsePodRef: no CNI_ARGS panics; ok means a namespace and a name;
// whenever libcni's types.LoadArgs reads the string, it reads the same pod.
func FuzzParsePodRef(f *testing.F) {
	for _, seed := range []string{
		// containerd
		"K8S_POD_INFRA_CONTAINER_ID=0b1f0e4c;K8S_POD_UID=6f1d2c3a-9b7e-4f00-8c1d-3e2a1b0c9d8e;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=productpage-v1-6b746f74dc-9stvs",
		// CRI-O
		"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_UID=u",
		// dockershim, no UID
		"IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1;K8S_POD_INFRA_CONTAINER_ID=x",
		"", ";", "=", "K8S_POD_NAME=a=b;K8S_POD_NAMESPACE=ns", " K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, args string) {
		ref, ok := parsePodRef(args)
		if ok != (ref.Namespace != "" && ref.Name != "") {
			t.Fatalf("ok %v for %+v", ok, ref)
		}
		if strings.Contains(ref.Namespace+ref.Name+ref.UID, ";") {
			t.Fatalf("a value holds the separator: %+v", ref)
		}
		lib := k8sArgs{CommonArgs: types.CommonArgs{IgnoreUnknown: true}}
		if types.LoadArgs(args, &lib) != nil {
			return
		}
		if ref.Namespace != string(lib.K8S_POD_NAMESPACE) || ref.Name != string(lib.K8S_POD_NAME) || ref.UID != string(lib.K8S_POD_UID) {
			t.Fatalf("%q: we read %+v, libcni reads %s/%s uid %s", args, ref, lib.K8S_POD_NAMESPACE, lib.K8S_POD_NAME, lib.K8S_POD_UID)
		}
	})
}
