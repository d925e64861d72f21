package plugin

import (
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
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
		want podRef
	}{
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=x", true, podRef{Namespace: "default", Name: "p"}},
		{"K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=0b7d", true, podRef{Namespace: "default", Name: "p", UID: "0b7d"}},
		{"K8S_POD_NAMESPACE=default", false, podRef{Namespace: "default"}},
		{"", false, podRef{}},
		{"FOO=bar;K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns", true, podRef{Namespace: "ns", Name: "p"}},
	} {
		got, ok := parsePodRef(c.args)
		if ok != c.ok || got != c.want {
			t.Errorf("parsePodRef(%q) = %v %v", c.args, got, ok)
		}
	}
}
