package chain

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// TestIstioInjectedPods (issue 12) runs pods as Istio's injector writes
// them through the real chain: those Istio's CNI leaves alone get nothing
// and start (ADD succeeds), the root proxy is not taken at its word, and
// DNS capture reaches the kernel.
func TestIstioInjectedPods(t *testing.T) {
	proxy := func(p *corev1.Pod) *corev1.Container { return &p.Spec.Containers[1] }
	none := cnitest.SeedPod("default", "none-v1", map[string]string{"sidecar.istio.io/interceptionMode": "NONE"})
	proxyless := cnitest.SeedPod("default", "grpc-v1", nil)
	proxy(proxyless).Env = []corev1.EnvVar{{Name: "DISABLE_ENVOY", Value: "true"}}
	gateway := cnitest.SeedPod("default", "gateway-v1", nil)
	proxy(gateway).Args = []string{"proxy", "router", "--domain", "default.svc.cluster.local"}
	root := cnitest.SeedPod("default", "root-v1", nil)
	zero, group := int64(0), int64(1337)
	proxy(root).SecurityContext = &corev1.SecurityContext{RunAsUser: &zero, RunAsGroup: &group}
	dns := cnitest.SeedPod("default", "dns-v1", nil)
	proxy(dns).Env = []corev1.EnvVar{{Name: "ISTIO_META_DNS_CAPTURE", Value: "true"}}
	tproxy := cnitest.SeedPod("default", "tproxy-v1", map[string]string{"sidecar.istio.io/interceptionMode": "TPROXY"})
	e := newEnv(t, "1.0.0", map[string]any{"iptablesBackend": "nft"}, none, proxyless, gateway, root, dns, tproxy)

	for _, name := range []string{"none-v1", "grpc-v1", "gateway-v1"} {
		p := e.pod("default", name)
		if _, err := e.chain.Add(p); err != nil {
			t.Fatalf("%s: ADD must succeed, the pod is left alone: %v", name, err)
		}
		if c := istioChains(t, p, nat.NFT); len(c) > 0 {
			t.Fatalf("%s got %v", name, c)
		}
		if err := e.chain.Del(p); err != nil {
			t.Fatal(err)
		}
	}
	log := logText(t, e)
	for _, want := range []string{"asks for no interception", "proxyless agent", `runs as \"router\"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not give the reason %q", want)
		}
	}

	p := e.pod("default", "root-v1")
	if _, err := e.chain.Add(p); err != nil {
		t.Fatal(err)
	}
	save, err := p.Netns.Output("iptables-nft-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(save, "--uid-owner 0 ") || !strings.Contains(save, "--uid-owner 1337 ") {
		t.Fatalf("a root proxy must be matched as 1337, never UID 0:\n%s", save)
	}

	p = e.pod("default", "dns-v1")
	if _, err := e.chain.Add(p); err != nil {
		t.Fatal(err)
	}
	if err := e.chain.Check(p); err != nil {
		t.Fatalf("CHECK of a DNS-capturing pod: %v", err)
	}
	save, err = p.Netns.Output("iptables-nft-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-A OUTPUT -p udp -m udp --dport 53 -j ISTIO_OUTPUT", "--dport 53 -j REDIRECT --to-ports 15053"} {
		if !strings.Contains(save, want) {
			t.Errorf("DNS capture: the kernel lacks %q:\n%s", want, save)
		}
	}
	if err := e.chain.Del(p); err != nil {
		t.Fatal(err)
	}
	if c := istioChains(t, p, nat.NFT); len(c) > 0 {
		t.Fatalf("DEL left %v", c)
	}

	// TPROXY through the real plug-in: ADD programs mangle and the policy
	// route, CHECK passes then fails once the route is gone, DEL removes all.
	p = e.pod("default", "tproxy-v1")
	if _, err := e.chain.Add(p); err != nil {
		t.Fatalf("TPROXY ADD: %v", err)
	}
	if err := e.chain.Check(p); err != nil {
		t.Fatalf("TPROXY CHECK: %v", err)
	}
	mangle, err := p.Netns.Output("iptables-nft-save", "-t", "mangle")
	if err != nil || !strings.Contains(mangle, "-j TPROXY --on-port 15006") {
		t.Fatalf("TPROXY: mangle lacks the TPROXY rule (%v):\n%s", err, mangle)
	}
	if err := p.Netns.Run("ip", "-4", "rule", "del", "fwmark", "1337", "lookup", "133"); err != nil {
		t.Fatal(err)
	}
	if err := e.chain.Check(p); err == nil || !strings.Contains(err.Error(), "ip rule") {
		t.Fatalf("CHECK without the ip rule = %v, want an error naming it", err)
	}
	if err := e.chain.Del(p); err != nil {
		t.Fatal(err)
	}
	all, _ := p.Netns.Output("iptables-nft-save")
	routes, _ := p.Netns.Output("ip", "-6", "rule", "show", "fwmark", "1337")
	if strings.Contains(all, "ISTIO_") || strings.Contains(routes, "lookup 133") {
		t.Fatalf("DEL left TPROXY state:\n%s\n%s", all, routes)
	}
}
