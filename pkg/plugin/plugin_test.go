package plugin

import (
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

func TestPanicBecomesCNIError(t *testing.T) {
	err := guard(func(*skel.CmdArgs) error { panic("boom") })(&skel.CmdArgs{})
	e, ok := err.(*types.Error)
	if !ok || e.Code != types.ErrInternal || e.Msg != "mesh-cni panicked: boom" {
		t.Fatalf("got %T %v", err, err)
	}
}

func TestParsePodRef(t *testing.T) {
	for _, c := range []struct {
		args string
		ok   bool
		want pod.Ref
	}{
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=x", true, pod.Ref{Namespace: "default", Name: "p"}},
		{"K8S_POD_NAMESPACE=default", false, pod.Ref{Namespace: "default"}},
		{"", false, pod.Ref{}},
		{"FOO=bar;K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns", true, pod.Ref{Namespace: "ns", Name: "p"}},
		// containerd's order, with the UID.
		{"K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=6f1d2c3a-9b7e-4f00-8c1d-3e2a1b0c9d8e;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p",
			true, pod.Ref{Namespace: "default", Name: "p", UID: "6f1d2c3a-9b7e-4f00-8c1d-3e2a1b0c9d8e"}},
		{"K8S_POD_NAMESPACE=a;K8S_POD_NAME=p;K8S_POD_NAMESPACE=b", true, pod.Ref{Namespace: "b", Name: "p"}},
	} {
		got, ok := parsePodRef(c.args)
		if ok != c.ok || got != c.want {
			t.Errorf("parsePodRef(%q) = %v %v", c.args, got, ok)
		}
	}
}
