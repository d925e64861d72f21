package chain

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/plugin"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// netnsBreaks are the ways a pod's netns path stops being an enterable
// network namespace while the runtime still holds the path.
var netnsBreaks = []struct {
	name   string
	break_ func(t *testing.T, n *cnitest.Netns)
}{
	{"deleted", func(t *testing.T, n *cnitest.Netns) { n.Delete() }},
	// The bind mount is gone, the file it was mounted on stays: what a
	// runtime that unmounts before it removes leaves behind.
	{"unmounted", func(t *testing.T, n *cnitest.Netns) {
		if err := unix.Unmount(n.Path(), unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}},
	{"regular-file", func(t *testing.T, n *cnitest.Netns) {
		n.Delete()
		if err := os.WriteFile(n.Path(), []byte("not a netns\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}},
	{"directory", func(t *testing.T, n *cnitest.Netns) {
		n.Delete()
		if err := os.Mkdir(n.Path(), 0o755); err != nil {
			t.Fatal(err)
		}
	}},
	// nsfs, but a UTS namespace: enterable, not as a network namespace.
	{"other-namespace-type", func(t *testing.T, n *cnitest.Netns) {
		n.Delete()
		if err := os.WriteFile(n.Path(), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("/proc/self/ns/uts", n.Path(), "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
	}},
}

// removePath undoes a break: whatever is at the path goes.
func removePath(path string) {
	_ = unix.Unmount(path, unix.MNT_DETACH)
	_ = os.RemoveAll(path)
}

// reserved reports whether host-local still holds an IP for the pod: the
// file it keeps per address in its data dir.
func reserved(t *testing.T, e *env, ip string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(e.dir, "ipam", e.chain.ConfList.Name, ip))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestDelWhenNetnsIsNotANetns: libcni runs DEL last plug-in first and stops
// at the first error, so mesh-cni's DEL must succeed for anything that is
// not an enterable netns; otherwise the primary's DEL, which frees the
// pod's IP, never runs. The host-local reservation proves it ran: ptp is
// the primary here, as it releases the IP before it looks at the netns
// (Debian's bridge 1.1.1 fails on such a path before its IPAM DEL: the
// primary's own business).
func TestDelWhenNetnsIsNotANetns(t *testing.T) {
	for _, b := range netnsBreaks {
		t.Run(b.name, func(t *testing.T) {
			e := newEnvWith(t, cnitest.ChainOptions{Primary: "ptp"}, map[string]any{"iptablesBackend": "nft"},
				cnitest.SeedPod("default", podName, redirecttest.SeedAnnotations))
			p := e.pod("default", podName)
			res, err := e.chain.Add(p)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			r, err := current.NewResultFromResult(res)
			if err != nil || len(r.IPs) != 1 {
				t.Fatalf("result %v %v", res, err)
			}
			ip := r.IPs[0].Address.IP.String()
			if !reserved(t, e, ip) {
				t.Fatalf("host-local holds no reservation for %s after ADD", ip)
			}
			t.Cleanup(func() { removePath(p.Netns.Path()) })
			b.break_(t, p.Netns)

			// The chain: whatever bridge says about its veth, host-local
			// must have run and freed the address.
			derr := e.chain.Del(p)
			if reserved(t, e, ip) {
				t.Fatalf("the pod's IP %s is still reserved: the primary's DEL did not run (chain DEL: %v)", ip, derr)
			}
			if derr != nil && strings.Contains(derr.Error(), "mesh-cni") {
				t.Fatalf("chain DEL failed in mesh-cni: %v", derr)
			}
			// mesh-cni's own DEL, as the runtime execs it (again).
			stdout, stderr, code := execPlugin(t, "DEL", p.Netns.Path(), "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME="+podName,
				netconf("1.0.0", map[string]any{"iptablesBackend": "nft"}))
			if code != 0 {
				t.Fatalf("mesh-cni DEL exit %d: %s %s", code, stdout, stderr)
			}
		})
	}
}

// TestAddCheckOnNotANetns: ADD and CHECK on a path that is not an enterable
// netns fail with an error naming CNI_NETNS and the path; nothing is
// programmed anywhere.
func TestAddCheckOnNotANetns(t *testing.T) {
	srv := cnitest.NewPodServer(cnitest.SeedPod("default", podName, redirecttest.SeedAnnotations))
	t.Cleanup(srv.Close)
	kc, err := srv.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conf := netconf("1.0.0", map[string]any{"kubeconfig": kc, "iptablesBackend": "nft", "prevResult": prevResult("1.0.0")})
	for _, b := range netnsBreaks {
		t.Run(b.name, func(t *testing.T) {
			n, err := cnitest.NewNetns("mcni-pod")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { n.Delete(); removePath(n.Path()) })
			b.break_(t, n)
			for _, verb := range []string{"ADD", "CHECK"} {
				stdout, stderr, code := execPlugin(t, verb, n.Path(), "K8S_POD_NAMESPACE=default;K8S_POD_NAME="+podName, conf)
				var e struct {
					Code int    `json:"code"`
					Msg  string `json:"msg"`
				}
				if code == 0 || json.Unmarshal([]byte(stdout), &e) != nil {
					t.Fatalf("%s exit %d: %s %s", verb, code, stdout, stderr)
				}
				if !strings.Contains(e.Msg, "CNI_NETNS") || !strings.Contains(e.Msg, n.Path()) || !strings.Contains(e.Msg, "default/"+podName) {
					t.Errorf("%s: the error does not name CNI_NETNS, the path and the pod: %s", verb, stdout)
				}
			}
		})
	}
}

// flakyTables runs fault once, just before the first read of the pod's
// tables, then passes every call to the real tables.
type flakyTables struct {
	redirect.Tables
	fault func()
}

func (f *flakyTables) Save(fam redirect.Family) (string, error) {
	if f.fault != nil {
		f.fault()
		f.fault = nil
	}
	return f.Tables.Save(fam)
}

// TestNetnsGoneDuringDel: the netns goes away (deleted, or unmounted with
// the file left) between DEL's first look and its iptables run: DEL still
// succeeds, since the rules went with the netns.
func TestNetnsGoneDuringDel(t *testing.T) {
	for _, b := range netnsBreaks[:2] {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, "1.0.0", map[string]any{"iptablesBackend": "nft"},
				cnitest.SeedPod("default", podName, redirecttest.SeedAnnotations))
			p := e.pod("default", podName)
			if _, err := e.chain.Add(p); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			t.Cleanup(func() { removePath(p.Netns.Path()) })
			deps := plugin.Real()
			real := deps.NewTables
			hit := false
			deps.NewTables = func(path string, be nat.Backend) redirect.Tables {
				return &flakyTables{Tables: real(path, be), fault: func() { hit = true; b.break_(t, p.Netns) }}
			}
			pl := &plugin.Plugin{Deps: deps}
			conf, _ := json.Marshal(netconf("1.0.0", map[string]any{"iptablesBackend": "nft", "logLevel": "error"}))
			err := pl.Del(&skel.CmdArgs{ContainerID: p.ContainerID, Netns: p.Netns.Path(), IfName: "eth0",
				Args: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + podName, StdinData: conf})
			if !hit {
				t.Fatal("DEL never read the tables: the fault was not met")
			}
			if err != nil {
				t.Fatalf("DEL with the netns gone mid-way: %v", err)
			}
		})
	}
}
