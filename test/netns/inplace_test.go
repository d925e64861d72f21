package netns

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/inplace"
	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// In-place repair (REPAIR_MODE=repair): a pod that started before mesh-cni
// was in the chain is a running process in a netns without our rules. The
// node agent finds that netns through /proc and programs it as ADD would.
// Here the pod is sleep processes in a netns the test made, in a cgroup
// naming the pod UID as a kubelet does; the reference is the real plug-in
// binary's ADD of the same pod into a second netns.

// running is a pod as the node agent sees it: its API object, and its
// processes in their netns.
type running struct {
	ns    *cnitest.Netns
	procs *cnitest.PodProcs
	pod   *pod.Pod
	core  *corev1.Pod
}

func newUID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// startPod starts the seed pod `name` (with annotations) in a new netns,
// its pause process in a cgroup of the given driver.
func startPod(t *testing.T, name string, annotations map[string]string, d cnitest.CgroupDriver) *running {
	t.Helper()
	r := &running{ns: newNetns(t, "mcni-live")}
	r.core = cnitest.SeedPod("default", name, annotations)
	r.core.UID = types.UID(newUID(t))
	var err error
	if r.procs, err = cnitest.NewPodProcs(string(r.core.UID), d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.procs.Close) // before the netns is deleted (cleanups run last first)
	if _, err := r.procs.Start("pause", r.ns.Path()); err != nil {
		t.Fatal(err)
	}
	r.pod = toPod(t, r.core)
	return r
}

// toPod is the pod as the API serves it, decoded as the agent does.
func toPod(t testing.TB, p *corev1.Pod) *pod.Pod {
	t.Helper()
	p.APIVersion, p.Kind = "v1", "Pod"
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pod.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pluginConfig is the config the plug-in p runs with (p.cmd's), as the
// agent loads it from the installed conflist.
func pluginConfig(t *testing.T, p *plugin) *config.Config {
	t.Helper()
	conf, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "mesh-test", "type": "mesh-cni",
		"kubeconfig": p.kubeconfig, "iptablesBackend": string(p.backend),
		"sandboxDir": filepath.Join(p.dir, "sandboxes"),
	})
	cfg, err := config.Parse(conf)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func repairer(lockWait time.Duration) *inplace.Repairer {
	r := inplace.New()
	r.NewTables = func(path string, b nat.Backend) redirect.Tables {
		return &nat.Netns{Path: path, Backend: b, LockWait: lockWait}
	}
	return r
}

// records is what the sandbox dir holds for the pod.
func records(t *testing.T, cfg *config.Config, uid string) []sandbox.Record {
	t.Helper()
	entries, err := sandbox.List(cfg.SandboxDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []sandbox.Record
	for _, e := range entries {
		if e.Err == nil && e.Record.UID == uid {
			out = append(out, e.Record)
		}
	}
	return out
}

// nothingOfOurs fails unless neither family of n holds a mesh-cni rule.
func nothingOfOurs(t *testing.T, n *cnitest.Netns, b nat.Backend) {
	t.Helper()
	for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
		if got := kernelRules(t, tablesFor(n, b), fam); len(got) > 0 {
			t.Errorf("%s %s holds mesh rules:\n  %s", n.Name, fam, strings.Join(got, "\n  "))
		}
	}
}

func drivers(b nat.Backend) cnitest.CgroupDriver {
	if b == nat.Legacy {
		return cnitest.Cgroupfs
	}
	return cnitest.Systemd
}

// TestInPlaceMatchesAdd: the running pod's netns ends up holding exactly
// what the plug-in's ADD programs for the same pod (and the seed's own
// restore input): CHECK passes on it, the record says redirected. A second
// repair changes nothing.
func TestInPlaceMatchesAdd(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			live := startPod(t, "productpage", redirecttest.SeedAnnotations, drivers(b))
			p := newPlugin(t, b, live.core)
			cfg := pluginConfig(t, p)
			nothingOfOurs(t, live.ns, b) // it started unmeshed

			added := newNetns(t, "mcni-added")
			if err := run(p.cmd("ADD", added, "productpage")); err != nil {
				t.Fatal(err)
			}
			want := kernelRules(t, tablesFor(added, b), redirect.IPv4)
			if seed := seedReference(t, b); !slices.Equal(want, seed) {
				t.Fatalf("ADD's rules differ from the seed's:\n  %s", strings.Join(want, "\n  "))
			}

			r := repairer(5 * time.Second)
			detail, err := r.RepairInPlace(context.Background(), live.pod, []string{"198.18.0.5"}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(detail)
			if err := holdsExactly(t, p, live.ns, "productpage", want); err != nil {
				t.Fatal(err)
			}
			if got := kernelRules(t, tablesFor(live.ns, b), redirect.IPv6); len(got) > 0 {
				t.Fatalf("an IPv4-only pod got IPv6 rules (ADD programs none):\n  %s", strings.Join(got, "\n  "))
			}
			recs := records(t, cfg, string(live.core.UID))
			if len(recs) != 1 || recs[0].ContainerID != "inplace-"+string(live.core.UID) ||
				recs[0].Decision != "redirected" || recs[0].Reason != inplace.Reason ||
				recs[0].Namespace != "default" || recs[0].Name != "productpage" || !slices.Equal(recs[0].Families, []int{4}) {
				t.Fatalf("records: %+v", recs)
			}
			if !sameNetns(t, recs[0].Netns, live.ns.Path()) {
				t.Fatalf("the record's netns %s is not the pod's", recs[0].Netns)
			}

			again, err := r.RepairInPlace(context.Background(), live.pod, []string{"198.18.0.5"}, cfg)
			if err != nil || !strings.Contains(again, "already held") {
				t.Fatalf("second repair: %q, %v; want no change", again, err)
			}
			if err := holdsExactly(t, p, live.ns, "productpage", want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func sameNetns(t *testing.T, a, b string) bool {
	t.Helper()
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// TestInPlaceDualStack: a pod with an IPv6 address gets both families, as
// ADD gives them; Verify agrees before (false) and after (true), and sees
// a rule removed behind its back.
func TestInPlaceDualStack(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			live := startPod(t, "productpage", redirecttest.SeedAnnotations, drivers(b))
			cfg := pluginConfig(t, newPlugin(t, b))
			r := repairer(5 * time.Second)
			ips := []string{"198.18.0.5", "2001:db8::5"}
			ctx := context.Background()
			if ok, _, err := r.Verify(ctx, live.pod, ips, cfg); ok || err != nil {
				t.Fatalf("Verify before: %v, %v; want false", ok, err)
			}
			if _, err := r.RepairInPlace(ctx, live.pod, ips, cfg); err != nil {
				t.Fatal(err)
			}
			for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
				if len(kernelRules(t, tablesFor(live.ns, b), fam)) == 0 {
					t.Errorf("%s: no rules", fam)
				}
			}
			if ok, detail, err := r.Verify(ctx, live.pod, ips, cfg); !ok || err != nil {
				t.Fatalf("Verify after: %v %q %v", ok, detail, err)
			}
			if err := live.ns.Run("ip6tables-"+string(b), "-t", "nat", "-D", "ISTIO_OUTPUT", "1"); err != nil {
				t.Fatal(err)
			}
			if ok, detail, err := r.Verify(ctx, live.pod, ips, cfg); ok || err != nil || !strings.Contains(detail, "IPv6") {
				t.Fatalf("Verify after tampering: %v %q %v; want the IPv6 difference", ok, detail, err)
			}
		})
	}
}

// TestInPlaceTraffic: the running pod's app and stand-in sidecar keep
// running; before the repair the app's connections leave directly (the
// hole), after it they are captured on 15001 and inbound on 15006, with
// no process restarted.
func TestInPlaceTraffic(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			live := startPod(t, "productpage", nil, drivers(b))
			peer := newNetns(t, "mcni-peer")
			if err := cnitest.Link(live.ns, "eth0", podV4+"/24", peer, "eth0", peerV4+"/24"); err != nil {
				t.Fatal(err)
			}
			cfg := pluginConfig(t, newPlugin(t, b))
			proxy := live.ns.Command(proxyUID, proxyUID, standin, "proxy", "--ports", "15001,15006")
			app := live.ns.Command(appUID, appUID, standin, "app", "--listen", ":9080")
			startProc(t, proxy)
			startProc(t, app)
			startProc(t, peer.Command(0, 0, standin, "app", "--listen", ":8080"))
			waitDial(t, live.ns, proxyUID, "127.0.0.1:15001")
			waitDial(t, live.ns, appUID, "127.0.0.1:9080")
			waitDial(t, peer, 0, "127.0.0.1:8080")

			unmeshed := []flow{
				{name: "unmeshed: app outbound leaves directly", from: live.ns, uid: appUID, gid: appUID, addr: peerV4 + ":8080", wantStart: "app "},
				{name: "unmeshed: inbound reaches the app", from: peer, addr: podV4 + ":9080", wantStart: "app "},
			}
			for _, f := range unmeshed {
				f.check(t)
			}
			if _, err := repairer(5*time.Second).RepairInPlace(context.Background(), live.pod, []string{podV4}, cfg); err != nil {
				t.Fatal(err)
			}
			meshed := []flow{
				{name: "app outbound is captured on 15001", from: live.ns, uid: appUID, gid: appUID, addr: peerV4 + ":8080", wantStart: fmt.Sprintf("port=15001 orig=%s:8080", peerV4)},
				{name: "inbound is captured on 15006", from: peer, addr: podV4 + ":9080", wantStart: fmt.Sprintf("port=15006 orig=%s:9080", podV4)},
				{name: "the proxy's own outbound leaves directly", from: live.ns, uid: proxyUID, gid: proxyUID, addr: peerV4 + ":8080", wantStart: "app "},
			}
			for _, f := range meshed {
				f.check(t)
			}
			for _, c := range []*exec.Cmd{proxy, app} {
				if c.ProcessState != nil || c.Process.Signal(syscall.Signal(0)) != nil {
					t.Errorf("process %d did not keep running", c.Process.Pid)
				}
			}
		})
	}
}

// BenchmarkInPlaceRepair is one repair of a running, unmeshed seed pod:
// the /proc scans (find, and confirm after), the netns lock, the check,
// the restore and read-back, the record. The pod's netns and process are
// made and removed untimed.
func BenchmarkInPlaceRepair(b *testing.B) {
	for _, backend := range backends {
		b.Run(string(backend), func(b *testing.B) {
			conf, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "mesh-bench", "type": "mesh-cni",
				"iptablesBackend": string(backend), "sandboxDir": b.TempDir()})
			cfg, err := config.Parse(conf)
			if err != nil {
				b.Fatal(err)
			}
			r := repairer(5 * time.Second)
			for range b.N {
				b.StopTimer()
				core := cnitest.SeedPod("default", "productpage", redirecttest.SeedAnnotations)
				core.UID = types.UID(newUID(b))
				n, err := cnitest.NewNetns("mcni-bench")
				if err != nil {
					b.Fatal(err)
				}
				procs, err := cnitest.NewPodProcs(string(core.UID), drivers(backend))
				if err == nil {
					_, err = procs.Start("pause", n.Path())
				}
				p := toPod(b, core)
				b.StartTimer()
				if err == nil {
					_, err = r.RepairInPlace(context.Background(), p, []string{"198.18.0.5"}, cfg)
				}
				b.StopTimer()
				if procs != nil {
					procs.Close()
				}
				n.Delete()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
