package nodeinspect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// fakeKubectl answers as an API server would for one pod on node-1, and
// records every call.
type fakeKubectl struct {
	calls    [][]string
	manifest []byte
	exit     string
	podFound bool
}

func (f *fakeKubectl) Run(_ context.Context, stdin []byte, args ...string) ([]byte, error) {
	f.calls = append(f.calls, args)
	switch {
	case args[0] == "config":
		return []byte("bookinfo"), nil
	case args[0] == "get" && args[1] == "pod" && strings.HasPrefix(args[len(args)-1], "jsonpath={.spec.nodeName}"):
		if !f.podFound {
			return nil, errors.New(`Error from server (NotFound): pods "x" not found`)
		}
		return []byte("node-1"), nil
	case args[0] == "get" && args[1] == "daemonset":
		return []byte("mesh-cni/install-cni:dev"), nil
	case args[0] == "create":
		f.manifest = stdin
		return []byte("mesh-cni-inspect-abcde"), nil
	case args[0] == "get" && args[1] == "pod":
		return []byte("Failed\t" + f.exit + "\t"), nil
	case args[0] == "logs":
		return []byte("bookinfo/productpage: DRIFT\n"), nil
	case args[0] == "delete":
		return nil, nil
	}
	return nil, errors.New("unexpected kubectl " + strings.Join(args, " "))
}

func TestInspectPassesExitCodeThrough(t *testing.T) {
	f := &fakeKubectl{exit: "1", podFound: true}
	var out, errb bytes.Buffer
	code := Command([]string{"inspect", "productpage", "--context", "prod"}, nil, &out, &errb,
		func(kc, ctx string) Kubectl {
			if ctx != "prod" {
				t.Errorf("--context %q not passed", ctx)
			}
			return f
		})
	if code != 1 || !strings.Contains(out.String(), "DRIFT") {
		t.Fatalf("exit %d, out %q, stderr %q", code, out.String(), errb.String())
	}
	var pod struct {
		Spec struct {
			NodeName   string `json:"nodeName"`
			Containers []struct {
				Image           string   `json:"image"`
				Command         []string `json:"command"`
				SecurityContext struct {
					Privileged   *bool `json:"privileged"`
					Capabilities struct {
						Drop, Add []string
					} `json:"capabilities"`
				} `json:"securityContext"`
				VolumeMounts []struct {
					ReadOnly bool `json:"readOnly"`
				} `json:"volumeMounts"`
			} `json:"containers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(f.manifest, &pod); err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	if pod.Spec.NodeName != "node-1" || c.Image != "mesh-cni/install-cni:dev" ||
		!slices.Equal(c.Command, []string{BinaryPath, "inspect", "--root", HostRoot, "bookinfo/productpage", "-o", "text"}) {
		t.Fatalf("inspector pod: %s", f.manifest)
	}
	if sc.Privileged == nil || *sc.Privileged || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) ||
		!slices.Equal(sc.Capabilities.Add, []string{"SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_CHROOT"}) || !c.VolumeMounts[0].ReadOnly {
		t.Fatalf("inspector is not least privilege: %s", f.manifest)
	}
	if last := f.calls[len(f.calls)-1]; last[0] != "delete" || !slices.Contains(last, "mesh-cni-inspect-abcde") {
		t.Fatalf("inspector pod not deleted; last call %q", last)
	}
}

func TestInspectUnknownPod(t *testing.T) {
	f := &fakeKubectl{}
	var out, errb bytes.Buffer
	code := Command([]string{"inspect", "nope", "-n", "default"}, nil, &out, &errb, func(string, string) Kubectl { return f })
	if code != ExitUnknown || !strings.Contains(errb.String(), "NotFound") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	for _, c := range f.calls {
		if c[0] == "create" {
			t.Fatal("an inspector pod was created for a pod that does not exist")
		}
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"inspect"}, {"inspect", "--all"}, {"inspect", "a", "b"}, {"frob"}} {
		var out, errb bytes.Buffer
		if code := Command(args, nil, &out, &errb, func(string, string) Kubectl { return &fakeKubectl{} }); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, ExitUsage)
		}
	}
}

// stuckKubectl is a cluster where the inspector cannot start.
type stuckKubectl struct{ fakeKubectl }

func (f *stuckKubectl) Run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	if args[0] == "get" && args[1] == "pod" && strings.Contains(args[len(args)-1], "status.phase") {
		f.calls = append(f.calls, args)
		return []byte("Pending\t\tCreateContainerError\tpath \"/\" is mounted on \"/\" but it is not a shared or slave mount"), nil
	}
	return f.fakeKubectl.Run(ctx, stdin, args...)
}

// An inspector that cannot start fails at once with the kubelet's reason,
// and is deleted.
func TestInspectorCannotStart(t *testing.T) {
	f := &stuckKubectl{fakeKubectl{podFound: true}}
	var out, errb bytes.Buffer
	code := Command([]string{"inspect", "productpage", "--timeout", "1h"}, nil, &out, &errb, func(string, string) Kubectl { return f })
	if code != ExitFailed || !strings.Contains(errb.String(), "CreateContainerError") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if last := f.calls[len(f.calls)-1]; last[0] != "delete" {
		t.Fatalf("inspector pod not deleted; last call %q", last)
	}
}
