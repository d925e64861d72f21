package netns

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/podcheck"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// The traffic tests of issue 12: pods as Istio's injector writes them, run
// through the same decision (podcheck) and rules (redirect) the plug-in
// uses, then real connections.

// flow is one connection (or datagram) and the line it must be answered with.
type flow struct {
	name      string
	from      *cnitest.Netns
	uid, gid  int
	addr      string
	udp       bool
	wantStart string
}

func (f flow) check(t *testing.T) {
	t.Helper()
	args := []string{"dial", "--timeout", "2s"}
	if f.udp {
		args = append(args, "--udp")
	}
	out, err := f.from.Command(f.uid, f.gid, standin, append(args, f.addr)...).CombinedOutput()
	got := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(got, f.wantStart) {
		t.Errorf("%s: dial %s (udp=%v) as %d:%d = %q, %v; want a reply starting %q", f.name, f.addr, f.udp, f.uid, f.gid, got, err, f.wantStart)
	}
}

// meshPod is a pod netns joined to a peer, with s programmed in both
// families by backend b.
type meshPod struct {
	pod, peer *cnitest.Netns
}

func newMeshPod(t *testing.T, b nat.Backend, s redirect.Settings) meshPod {
	t.Helper()
	m := meshPod{pod: newNetns(t, "mcni-pod"), peer: newNetns(t, "mcni-peer")}
	if err := cnitest.Link(m.pod, "eth0", podV4+"/24,"+podV6+"/64", m.peer, "eth0", peerV4+"/24,"+peerV6+"/64"); err != nil {
		t.Fatal(err)
	}
	tb := tablesFor(m.pod, b)
	for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
		if err := redirect.Apply(tb, redirect.Build(s, fam)); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// injected is istio-proxy as the injector writes it in CNI mode: a native
// sidecar with "proxy sidecar" args; mods vary it.
func injected(mods ...func(*pod.Pod, *pod.Container)) *pod.Pod {
	always := pod.RestartPolicyAlways
	p := &pod.Pod{
		Metadata: pod.Metadata{Namespace: "default", Name: "reviews-v1-x", Annotations: map[string]string{}},
		Spec: pod.Spec{
			InitContainers: []pod.Container{{Name: "istio-validation"}, {Name: "istio-proxy", RestartPolicy: &always,
				Args: []string{"proxy", "sidecar", "--domain", "default.svc.cluster.local"}}},
			Containers: []pod.Container{{Name: "reviews"}},
		},
	}
	for _, m := range mods {
		m(p, &p.Spec.InitContainers[1])
	}
	return p
}

// settingsFor runs the plug-in's decision and resolution for p.
func settingsFor(t *testing.T, p *pod.Pod) redirect.Settings {
	t.Helper()
	v := podcheck.Check(p, podcheck.Config{})
	if !v.Redirect {
		t.Fatalf("pod not redirected: %s", v.Reason)
	}
	s, err := redirect.DefaultNode().Resolve(p.Metadata.Annotations, v.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTrafficRootProxy (issue 12.1): with capNetBindService the proxy runs
// as root with GID 1337. A root app must still be captured, and the proxy
// (UID 0, GID 1337) must still leave directly. Programming "--uid-owner 0"
// let every root process bypass capture.
func TestTrafficRootProxy(t *testing.T) {
	p := injected(func(_ *pod.Pod, c *pod.Container) {
		c.SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(0)), RunAsGroup: ptr(int64(1337))}
	})
	s := settingsFor(t, p)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			m := newMeshPod(t, b, s)
			startProc(t, m.pod.Command(0, proxyUID, standin, "proxy", "--ports", "15001,15006"))
			startProc(t, m.peer.Command(0, 0, standin, "app", "--listen", ":8080"))
			waitDial(t, m.pod, proxyUID, "127.0.0.1:15001")
			waitDial(t, m.peer, 0, "127.0.0.1:8080")
			for _, f := range []flow{
				{"a root app is captured", m.pod, 0, 0, peerV4 + ":8080", false, "port=15001 orig=" + peerV4 + ":8080"},
				{"IPv6: a root app is captured", m.pod, 0, 0, "[" + peerV6 + "]:8080", false, "port=15001 orig=[" + peerV6 + "]:8080"},
				{"the root proxy (GID 1337) leaves directly", m.pod, 0, proxyUID, peerV4 + ":8080", false, "app "},
				{"UID 1337 is the proxy's, not an app's", m.pod, proxyUID, proxyUID, peerV4 + ":8080", false, "app "},
			} {
				f.check(t)
			}
		})
	}
}

// TestTrafficExcludeOutboundPortsReplaces (issue 12.5): a pod's
// excludeOutboundPorts replaces the 15020 default, so the app's traffic to
// a peer's 15020 is captured like any other port.
func TestTrafficExcludeOutboundPortsReplaces(t *testing.T) {
	p := injected(func(p *pod.Pod, _ *pod.Container) {
		p.Metadata.Annotations[redirect.AnnoExcludeOutboundPorts] = "8081"
	})
	s := settingsFor(t, p)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			m := newMeshPod(t, b, s)
			startProc(t, m.pod.Command(proxyUID, proxyUID, standin, "proxy", "--ports", "15001,15006"))
			startProc(t, m.peer.Command(0, 0, standin, "app", "--listen", ":15020"))
			startProc(t, m.peer.Command(0, 0, standin, "app", "--listen", ":8081"))
			waitDial(t, m.pod, proxyUID, "127.0.0.1:15001")
			waitDial(t, m.peer, 0, "127.0.0.1:15020")
			waitDial(t, m.peer, 0, "127.0.0.1:8081")
			for _, f := range []flow{
				{"15020 is captured once the default is replaced", m.pod, appUID, appUID, peerV4 + ":15020", false, "port=15001 orig=" + peerV4 + ":15020"},
				{"IPv6: 15020 is captured", m.pod, appUID, appUID, "[" + peerV6 + "]:15020", false, "port=15001 orig=[" + peerV6 + "]:15020"},
				{"the annotation's port leaves directly", m.pod, appUID, appUID, peerV4 + ":8081", false, "app "},
			} {
				f.check(t)
			}
		})
	}
}

// TestTrafficLoopbackInclude (issue 12.6): a loopback range in
// includeOutboundIPRanges captures the app's traffic to those addresses
// (127.0.0.1 itself stays direct, as in Istio).
func TestTrafficLoopbackInclude(t *testing.T) {
	p := injected(func(p *pod.Pod, _ *pod.Container) {
		p.Metadata.Annotations[redirect.AnnoIncludeOutboundIPRanges] = "127.0.0.0/8"
	})
	s := settingsFor(t, p)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			m := newMeshPod(t, b, s)
			startProc(t, m.pod.Command(proxyUID, proxyUID, standin, "proxy", "--ports", "15001,15006"))
			startProc(t, m.pod.Command(appUID, appUID, standin, "app", "--listen", ":8080"))
			startProc(t, m.peer.Command(0, 0, standin, "app", "--listen", ":8080"))
			waitDial(t, m.pod, proxyUID, "127.0.0.1:15001")
			waitDial(t, m.pod, appUID, "127.0.0.1:8080")
			waitDial(t, m.peer, 0, "127.0.0.1:8080")
			for _, f := range []flow{
				{"the app to 127.0.0.2 is captured", m.pod, appUID, appUID, "127.0.0.2:8080", false, "port=15001 orig=127.0.0.2:8080"},
				{"the app to 127.0.0.1 stays direct", m.pod, appUID, appUID, "127.0.0.1:8080", false, "app "},
				{"a range not included leaves directly", m.pod, appUID, appUID, peerV4 + ":8080", false, "app "},
				// As in Istio: the proxy to a loopback address other than
				// 127.0.0.1 is sent to inbound capture.
				{"the proxy to 127.0.0.2 goes to inbound capture", m.pod, proxyUID, proxyUID, "127.0.0.2:8080", false, "port=15006 orig=127.0.0.2:8080"},
			} {
				f.check(t)
			}
		})
	}
}

// TestTrafficDNSCapture (issue 12.8): with ISTIO_META_DNS_CAPTURE the app's
// DNS, UDP and TCP, to any resolver (remote or local) lands on 15053; the
// proxy's own queries and other UDP leave directly.
func TestTrafficDNSCapture(t *testing.T) {
	p := injected(func(_ *pod.Pod, c *pod.Container) {
		c.Env = []pod.EnvVar{{Name: "ISTIO_META_DNS_CAPTURE", Value: "true"}}
	})
	s := settingsFor(t, p)
	if !s.CaptureDNS {
		t.Fatal("the proxy's ISTIO_META_DNS_CAPTURE was not read")
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			m := newMeshPod(t, b, s)
			startProc(t, m.pod.Command(proxyUID, proxyUID, standin, "proxy", "--ports", "15001,15006,15053", "--udp", "15053"))
			startProc(t, m.pod.Command(0, 0, standin, "app", "--listen", "127.0.0.53:5353", "--udp", "127.0.0.53:53")) // port 53 needs root
			startProc(t, m.peer.Command(0, 0, standin, "app", "--listen", ":53", "--udp", ":53"))
			startProc(t, m.peer.Command(0, 0, standin, "app", "--listen", ":8080", "--udp", ":5353"))
			waitDial(t, m.pod, proxyUID, "127.0.0.1:15053")
			waitDial(t, m.peer, 0, "127.0.0.1:53")
			waitDial(t, m.peer, 0, "127.0.0.1:8080")
			waitDial(t, m.pod, appUID, "127.0.0.53:5353")
			peer4, peer6 := peerV4+":53", "["+peerV6+"]:53"
			for _, f := range []flow{
				{"app UDP DNS lands on 15053", m.pod, appUID, appUID, peer4, true, "port=15053 udp"},
				{"app TCP DNS lands on 15053", m.pod, appUID, appUID, peer4, false, "port=15053 orig=" + peer4},
				{"IPv6 app UDP DNS lands on 15053", m.pod, appUID, appUID, peer6, true, "port=15053 udp"},
				{"IPv6 app TCP DNS lands on 15053", m.pod, appUID, appUID, peer6, false, "port=15053 orig=" + peer6},
				{"app UDP DNS to a local resolver lands on 15053", m.pod, appUID, appUID, "127.0.0.53:53", true, "port=15053 udp"},
				{"the proxy's UDP DNS reaches the resolver", m.pod, proxyUID, proxyUID, peer4, true, "app "},
				{"the proxy's TCP DNS reaches the resolver", m.pod, proxyUID, proxyUID, peer4, false, "app "},
				{"IPv6: the proxy's UDP DNS reaches the resolver", m.pod, proxyUID, proxyUID, peer6, true, "app "},
				{"other UDP is not captured", m.pod, appUID, appUID, peerV4 + ":5353", true, "app "},
				{"app TCP elsewhere still goes to 15001", m.pod, appUID, appUID, peerV4 + ":8080", false, "port=15001 orig=" + peerV4 + ":8080"},
			} {
				f.check(t)
			}
		})
	}
}

// TestTrafficRerouteVirtualInterfaces (issue 12.7): traffic a VM sends in
// through its interface (KubeVirt) is the workload's outbound: it lands on
// 15001 with its original destination, never on inbound capture.
func TestTrafficRerouteVirtualInterfaces(t *testing.T) {
	const vmV4, podVnetV4, vmV6, podVnetV6 = "198.18.9.2", "198.18.9.1", "2001:db8:9::2", "2001:db8:9::1"
	p := injected(func(p *pod.Pod, _ *pod.Container) {
		p.Metadata.Annotations[redirect.AnnoRerouteVirtualInterfaces] = "vnet0"
	})
	s := settingsFor(t, p)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			m := newMeshPod(t, b, s)
			vm := newNetns(t, "mcni-vm")
			if err := cnitest.Link(m.pod, "vnet0", podVnetV4+"/24,"+podVnetV6+"/64", vm, "eth0", vmV4+"/24,"+vmV6+"/64"); err != nil {
				t.Fatal(err)
			}
			for _, r := range [][]string{{"route", "add", "default", "via", podVnetV4}, {"-6", "route", "add", "default", "via", podVnetV6}} {
				if err := vm.Run("ip", r...); err != nil {
					t.Fatal(err)
				}
			}
			startProc(t, m.pod.Command(proxyUID, proxyUID, standin, "proxy", "--ports", "15001,15006"))
			startProc(t, m.pod.Command(appUID, appUID, standin, "app", "--listen", ":9080"))
			startProc(t, m.peer.Command(0, 0, standin, "app", "--listen", ":8080"))
			waitDial(t, m.pod, proxyUID, "127.0.0.1:15001")
			waitDial(t, m.peer, 0, "127.0.0.1:8080")
			for _, f := range []flow{
				{"the VM's outbound lands on 15001", vm, 0, 0, peerV4 + ":8080", false, "port=15001 orig=" + peerV4 + ":8080"},
				{"IPv6: the VM's outbound lands on 15001", vm, 0, 0, "[" + peerV6 + "]:8080", false, "port=15001 orig=[" + peerV6 + "]:8080"},
				{"the VM calling the pod is outbound, not inbound", vm, 0, 0, podVnetV4 + ":9080", false, "port=15001 orig=" + podVnetV4 + ":9080"},
				{"inbound on eth0 is still captured on 15006", m.peer, 0, 0, podV4 + ":9080", false, fmt.Sprintf("port=15006 orig=%s:9080", podV4)},
			} {
				f.check(t)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestValidation: the stand-in's istio-validation passes as the proxy's UID
// in a programmed netns and fails in one mesh-cni left alone; --want none
// is the reverse (the e2e's istio-init pod).
func TestValidation(t *testing.T) {
	s := settingsFor(t, injected())
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			meshed := newMeshPod(t, b, s)
			bare := newNetns(t, "mcni-bare")
			if err := bare.Run("ip", "link", "set", "lo", "up"); err != nil {
				t.Fatal(err)
			}
			run := func(n *cnitest.Netns, want string) error {
				out, err := n.Command(proxyUID, proxyUID, standin, "validate", "--want", want, "--timeout", "2s").CombinedOutput()
				t.Logf("validate --want %s: %s", want, strings.TrimSpace(string(out)))
				return err
			}
			if err := run(meshed.pod, "captured"); err != nil {
				t.Errorf("validation fails in a programmed netns: %v", err)
			}
			if err := run(bare, "captured"); err == nil {
				t.Error("validation passes in a netns without rules")
			}
			if err := run(bare, "none"); err != nil {
				t.Errorf("--want none fails without rules: %v", err)
			}
			if err := run(meshed.pod, "none"); err == nil {
				t.Error("--want none passes in a programmed netns")
			}
		})
	}
}
