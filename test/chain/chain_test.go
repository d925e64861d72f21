package chain

import (
	"net/netip"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/plugin"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

const podName = "productpage-v1-6b746f74dc-9stvs"

// TestSeedPodThroughChain: ADD, CHECK, tamper+CHECK, DEL, DEL again, DEL
// after the netns is gone — for each backend.
func TestSeedPodThroughChain(t *testing.T) {
	for _, b := range []nat.Backend{nat.Legacy, nat.NFT} {
		t.Run(string(b), func(t *testing.T) {
			e := newEnv(t, "1.0.0", map[string]any{"iptablesBackend": string(b)},
				cnitest.SeedPod("default", podName, redirecttest.SeedAnnotations))
			p := e.pod("default", podName)
			res, err := e.chain.Add(p)
			if err != nil {
				t.Fatalf("ADD: %v\nlog:\n%s", err, logText(t, e))
			}
			r, err := current.NewResultFromResult(res)
			if err != nil || len(r.IPs) != 1 || !netip.MustParsePrefix("198.18.0.0/24").Contains(netip.MustParseAddr(r.IPs[0].Address.IP.String())) {
				t.Fatalf("result is not bridge's pass-through: %v %v", res, err)
			}
			tb := &nat.Netns{Path: p.Netns.Path(), Backend: b}
			if err := redirect.Verify(tb, seedRuleset(t)); err != nil {
				t.Fatalf("after ADD the pod netns does not hold the seed's rules: %v", err)
			}
			if n := e.srv.Requests.Load(); n != 1 {
				t.Errorf("ADD made %d API requests, want 1", n)
			}
			if err := e.chain.Check(p); err != nil {
				t.Fatalf("CHECK on a fresh pod: %v", err)
			}
			if err := p.Netns.Run("iptables-"+string(b), "-w", "10", "-t", "nat", "-D", "ISTIO_OUTPUT", "-d", "192.168.0.1/32", "-j", "RETURN"); err != nil {
				t.Fatal(err)
			}
			cerr := cniError(t, e.chain.Check(p))
			if cerr.Code != plugin.CodeRulesDiffer || !strings.Contains(cerr.Msg, "missing: -A ISTIO_OUTPUT -d 192.168.0.1/32 -j RETURN") {
				t.Fatalf("CHECK after tampering: %v", cerr)
			}
			if err := e.chain.Del(p); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if left := istioChains(t, p, b); len(left) > 0 {
				t.Fatalf("DEL left %v", left)
			}
			if err := e.chain.Del(p); err != nil {
				t.Fatalf("second DEL: %v", err)
			}
			p.Netns.Delete()
			if err := e.chain.Del(p); err != nil {
				t.Fatalf("DEL after the netns is gone: %v", err)
			}
		})
	}
}

// TestCNIVersions runs the chain at every version Debian's plug-ins speak;
// our result must be the bridge's, in that version.
func TestCNIVersions(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			e := newEnv(t, v, nil, cnitest.SeedPod("default", podName, redirecttest.SeedAnnotations))
			p := e.pod("default", podName)
			res, err := e.chain.Add(p)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if res.Version() != v {
				t.Fatalf("result version %s, want %s", res.Version(), v)
			}
			if got := istioChains(t, p, nat.NFT); len(got) != 4 {
				t.Fatalf("chains %v", got)
			}
			if v == "0.4.0" || v == "1.0.0" {
				if err := e.chain.Check(p); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			if err := e.chain.Del(p); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNotRedirected: pods that do not qualify pass through untouched; an
// excluded namespace costs no API request and no client (its kubeconfig
// may not even exist).
func TestNotRedirected(t *testing.T) {
	noSidecar := cnitest.SeedPod("default", "details-v1", nil)
	noSidecar.Spec.Containers = noSidecar.Spec.Containers[:1]
	disabled := cnitest.SeedPod("default", "ratings-v1", map[string]string{"sidecar.istio.io/inject": "false"})
	withInit := cnitest.SeedPod("default", "reviews-v1", nil)
	withInit.Spec.InitContainers = append(withInit.Spec.InitContainers, withInit.Spec.Containers[1])
	withInit.Spec.InitContainers[0].Name = "istio-init"
	e := newEnv(t, "1.0.0", map[string]any{"excludeNamespaces": []string{"kube-system", "legacy-apps"}},
		noSidecar, disabled, withInit)

	excluded := e.pod("legacy-apps", podName)
	if _, err := e.chain.Add(excluded); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Requests.Load(); n != 0 {
		t.Fatalf("excluded namespace made %d API requests", n)
	}
	if c := istioChains(t, excluded, nat.NFT); len(c) > 0 {
		t.Fatalf("excluded namespace got %v", c)
	}
	for _, name := range []string{"details-v1", "ratings-v1", "reviews-v1"} {
		p := e.pod("default", name)
		if _, err := e.chain.Add(p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c := istioChains(t, p, nat.NFT); len(c) > 0 {
			t.Fatalf("%s got %v", name, c)
		}
		if err := e.chain.Check(p); err != nil {
			t.Fatalf("CHECK %s: %v", name, err)
		}
		if err := e.chain.Del(p); err != nil {
			t.Fatal(err)
		}
	}
	log := logText(t, e)
	for _, want := range []string{`namespace \"legacy-apps\" is excluded`, "no istio-proxy container", `injection disabled by annotation sidecar.istio.io/inject=\"false\"`, "istio-init init container"} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not give the reason %q", want)
		}
	}
}

// TestAPIFailures: the failure policy decides when the API cannot answer;
// a missing pod is final and not retried; a bad annotation programs nothing.
func TestAPIFailures(t *testing.T) {
	bad := cnitest.SeedPod("default", "bad", map[string]string{redirect.AnnoExcludeInboundPorts: "22,99999"})
	t.Run("Block", func(t *testing.T) {
		e := newEnv(t, "1.0.0", map[string]any{"podLookupTimeout": "1s"}, cnitest.SeedPod("default", podName, nil))
		e.srv.Fail.Store(503)
		p := e.pod("default", podName)
		_, err := e.chain.Add(p)
		cerr := cniError(t, err)
		if cerr.Code != 11 || !strings.Contains(cerr.Msg, "default/"+podName) || !strings.Contains(cerr.Msg, "failurePolicy Block") {
			t.Fatalf("ADD with the API down: %v", cerr)
		}
		if n := e.srv.Requests.Load(); n < 2 {
			t.Errorf("a 503 was not retried (%d requests)", n)
		}
		if c := istioChains(t, p, nat.NFT); len(c) > 0 {
			t.Fatalf("failed ADD left %v", c)
		}
	})
	t.Run("Alert", func(t *testing.T) {
		e := newEnv(t, "1.0.0", map[string]any{"podLookupTimeout": "1s", "failurePolicy": "Alert"}, cnitest.SeedPod("default", podName, nil))
		e.srv.Fail.Store(503)
		p := e.pod("default", podName)
		if _, err := e.chain.Add(p); err != nil {
			t.Fatalf("Alert must let the pod start: %v", err)
		}
		if c := istioChains(t, p, nat.NFT); len(c) > 0 {
			t.Fatalf("got %v", c)
		}
		if log := logText(t, e); !strings.Contains(log, `"level":"ERROR"`) || !strings.Contains(log, "default/"+podName) {
			t.Fatalf("no error naming the pod in the log:\n%s", log)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		e := newEnv(t, "1.0.0", nil)
		p := e.pod("default", "ghost")
		cerr := cniError(t, func() error { _, err := e.chain.Add(p); return err }())
		if cerr.Code != plugin.CodePodLookup || !strings.Contains(cerr.Msg, "default/ghost does not exist") {
			t.Fatalf("%v", cerr)
		}
		if n := e.srv.Requests.Load(); n != 1 {
			t.Fatalf("a 404 was retried: %d requests", n)
		}
	})
	t.Run("BadAnnotation", func(t *testing.T) {
		e := newEnv(t, "1.0.0", nil, bad)
		p := e.pod("default", "bad")
		cerr := cniError(t, func() error { _, err := e.chain.Add(p); return err }())
		if cerr.Code != plugin.CodeBadAnnotation || !strings.Contains(cerr.Msg, "traffic.sidecar.istio.io/excludeInboundPorts") || !strings.Contains(cerr.Msg, "99999") {
			t.Fatalf("%v", cerr)
		}
		if c := istioChains(t, p, nat.NFT); len(c) > 0 {
			t.Fatalf("a rejected pod got %v", c)
		}
	})
}
