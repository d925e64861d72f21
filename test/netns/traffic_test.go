package netns

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

const (
	podV4, peerV4, peerExcluded = "198.18.0.2", "198.18.0.1", "198.18.1.1" // RFC 2544 test range
	podV6, peerV6               = "2001:db8::2", "2001:db8::1"             // RFC 3849 documentation range
	appUID                      = 1000
	proxyUID                    = 1337
)

// startProc runs a long-lived command and stops it when the test ends,
// before the namespaces it lives in are deleted.
func startProc(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// dial connects from ns as uid to addr and returns the line the server wrote.
func dial(ns *cnitest.Netns, uid int, addr string) (string, error) {
	out, err := ns.Command(uid, uid, standin, "dial", "--timeout", "2s", addr).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// waitDial retries until a listener answers (processes start asynchronously).
func waitDial(t *testing.T, ns *cnitest.Netns, uid int, addr string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := dial(ns, uid, addr)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s as uid %d: %v: %s", addr, uid, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTraffic proves the rules with real connections: a pod netns joined
// to a peer by a veth, a stand-in sidecar listening as UID 1337 on 15001
// and 15006 that reports SO_ORIGINAL_DST, and apps on both sides.
func TestTraffic(t *testing.T) {
	annotations := map[string]string{
		redirect.AnnoExcludeOutboundIPRanges: peerExcluded + "/32",
		redirect.AnnoExcludeOutboundPorts:    "8081",
	}
	s, err := redirect.DefaultNode().Resolve(annotations, redirect.Proxy{UID: proxyUID, GID: proxyUID})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			pod, peer := newNetns(t, "mcni-pod"), newNetns(t, "mcni-peer")
			if err := cnitest.Link(pod, "eth0", podV4+"/24,"+podV6+"/64", peer, "eth0", peerV4+"/24,"+peerExcluded+"/32,"+peerV6+"/64"); err != nil {
				t.Fatal(err)
			}
			if err := pod.Run("ip", "route", "add", "default", "via", peerV4); err != nil {
				t.Fatal(err)
			}
			tb := tablesFor(pod, b)
			for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
				if err := redirect.Apply(tb, redirect.Build(s, fam)); err != nil {
					t.Fatal(err)
				}
			}
			startProc(t, pod.Command(proxyUID, proxyUID, standin, "proxy", "--ports", "15001,15006"))
			startProc(t, pod.Command(appUID, appUID, standin, "app", "--listen", ":9080"))
			startProc(t, pod.Command(0, 0, standin, "app", "--listen", ":22"))
			startProc(t, peer.Command(0, 0, standin, "app", "--listen", ":8080"))
			startProc(t, peer.Command(0, 0, standin, "app", "--listen", ":8081"))
			// Wait for every listener through paths the rules leave alone.
			waitDial(t, pod, proxyUID, "127.0.0.1:15001")
			waitDial(t, pod, proxyUID, "127.0.0.1:9080")
			waitDial(t, peer, 0, "127.0.0.1:8080")
			waitDial(t, peer, 0, "127.0.0.1:8081")

			cases := []struct {
				name string
				from *cnitest.Netns
				uid  int
				addr string
				want string
			}{
				{"app outbound is captured on 15001", pod, appUID, peerV4 + ":8080", fmt.Sprintf("port=15001 orig=%s:8080", peerV4)},
				{"inbound on eth0 is captured on 15006", peer, 0, podV4 + ":9080", fmt.Sprintf("port=15006 orig=%s:9080", podV4)},
				{"the proxy's own outbound leaves directly", pod, proxyUID, peerV4 + ":8080", "app "},
				{"an excluded range leaves directly", pod, appUID, peerExcluded + ":8080", "app "},
				{"an excluded outbound port leaves directly", pod, appUID, peerV4 + ":8081", "app "},
				{"an excluded inbound port (22) reaches the app", peer, 0, podV4 + ":22", "app "},
				{"IPv6 app outbound is captured on 15001", pod, appUID, "[" + peerV6 + "]:8080", fmt.Sprintf("port=15001 orig=[%s]:8080", peerV6)},
				{"IPv6 inbound is captured on 15006", peer, 0, "[" + podV6 + "]:9080", fmt.Sprintf("port=15006 orig=[%s]:9080", podV6)},
				{"IPv6: the proxy's own outbound leaves directly", pod, proxyUID, "[" + peerV6 + "]:8080", "app "},
			}
			for _, c := range cases {
				got, err := dial(c.from, c.uid, c.addr)
				if err != nil || !strings.HasPrefix(got, c.want) {
					t.Errorf("%s: dial %s as uid %d = %q, %v; want a reply starting %q", c.name, c.addr, c.uid, got, err, c.want)
				}
			}
		})
	}
}
