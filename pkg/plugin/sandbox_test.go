package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/meshcni/mesh-cni/pkg/config/configtest"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// ADD records the sandbox, GC prunes the records of attachments the runtime
// no longer lists (its own network's only), DEL forgets.
func TestSandboxRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sandboxes")
	r := newRig(nil, &countingGetter{pod: sidecarPod(nil)})
	args := addArgs(`,"agentSocket":"","sandboxDir":"`+dir+`"`, podArgs)
	if _, err := r.p.AddResult(args); err != nil {
		t.Fatal(err)
	}
	entries, _ := sandbox.List(dir)
	if len(entries) != 1 || entries[0].Err != nil {
		t.Fatalf("after ADD: %+v", entries)
	}
	got := entries[0].Record
	if got.ContainerID != "c1" || got.Netns != "/proc/self/ns/net" || got.Namespace != "ns" || got.Name != "p" ||
		got.UID != "u1" || got.Decision != "redirected" || got.Network != "k8s-pod-network" || len(got.Families) != 1 {
		t.Fatalf("record %+v", got)
	}
	// Another network's record and a stale one of ours.
	for _, rec := range []sandbox.Record{
		{ContainerID: "other-net", Network: "multus-net", Netns: "/x", Namespace: "ns", Name: "q", Time: time.Now()},
		{ContainerID: "stale", Network: "k8s-pod-network", Netns: "/x", Namespace: "ns", Name: "old", Time: time.Now()},
	} {
		if err := sandbox.Write(dir, rec); err != nil {
			t.Fatal(err)
		}
	}
	gc := func(stdin string) {
		t.Helper()
		if err := r.p.GC(&skel.CmdArgs{StdinData: []byte(stdin)}); err != nil {
			t.Fatal(err)
		}
	}
	conf := func(extra string) string {
		return configtest.Conf("1.0.0", `,"agentSocket":"","sandboxDir":"`+dir+`"`+extra)
	}
	gc(conf("")) // no list: nothing pruned
	if names := files(t, dir); len(names) != 3 {
		t.Fatalf("GC without valid-attachments pruned: %v", names)
	}
	gc(conf(`,"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]`))
	if names := files(t, dir); strings.Join(names, ",") != "c1.json,other-net.json" {
		t.Fatalf("after GC: %v, want c1 and the other network's", names)
	}
	if err := r.p.Del(&skel.CmdArgs{ContainerID: "c1", Netns: "/nonexistent", IfName: "eth0", Args: podArgs,
		StdinData: []byte(conf(""))}); err != nil {
		t.Fatal(err)
	}
	if names := files(t, dir); strings.Join(names, ",") != "other-net.json" {
		t.Fatalf("after DEL: %v", names)
	}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}
