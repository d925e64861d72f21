package netns

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// tproxySettings is an injected pod asking for TPROXY interception.
func tproxySettings(t *testing.T) redirect.Settings {
	t.Helper()
	return settingsFor(t, injected(func(p *pod.Pod, _ *pod.Container) {
		p.Metadata.Annotations[redirect.AnnoInterceptionMode] = "TPROXY"
	}))
}

// TestTProxyTraffic (issue 12.3): inbound reaches the proxy's transparent
// listener on 15006 with its destination and source untouched; excluded
// ports reach the app; outbound is still REDIRECT to 15001.
func TestTProxyTraffic(t *testing.T) {
	s := tproxySettings(t)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			m := newMeshPod(t, b, s)
			for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
				if err := redirect.Verify(tablesFor(m.pod, b), redirect.Build(s, fam)); err != nil {
					t.Fatalf("CHECK right after ADD: %v", err)
				}
			}
			// Envoy holds CAP_NET_ADMIN in TPROXY mode; the stand-in's
			// transparent listener runs as root, its outbound one as 1337.
			startProc(t, m.pod.Command(0, 0, standin, "proxy", "--ports", "", "--tproxy", "15006"))
			startProc(t, m.pod.Command(proxyUID, proxyUID, standin, "proxy", "--ports", "15001"))
			startProc(t, m.pod.Command(appUID, appUID, standin, "app", "--listen", ":9080"))
			startProc(t, m.pod.Command(0, 0, standin, "app", "--listen", ":22"))
			startProc(t, m.peer.Command(0, 0, standin, "app", "--listen", ":8080"))
			waitDial(t, m.pod, proxyUID, "127.0.0.1:15001")
			waitDial(t, m.pod, proxyUID, "127.0.0.1:15006")
			waitDial(t, m.peer, 0, "127.0.0.1:8080")
			for _, f := range []flow{
				{"inbound lands on the transparent 15006, destination kept", m.peer, 0, 0, podV4 + ":9080", false,
					fmt.Sprintf("port=15006 tproxy orig=%s:9080 peer=%s:", podV4, peerV4)},
				{"IPv6 inbound lands on the transparent 15006", m.peer, 0, 0, "[" + podV6 + "]:9080", false,
					fmt.Sprintf("port=15006 tproxy orig=[%s]:9080 peer=[%s]:", podV6, peerV6)},
				{"an excluded inbound port (22) reaches the app", m.peer, 0, 0, podV4 + ":22", false, "app "},
				{"app outbound is still captured on 15001", m.pod, appUID, appUID, peerV4 + ":8080", false, "port=15001 orig=" + peerV4 + ":8080"},
				{"the proxy's own outbound leaves directly", m.pod, proxyUID, proxyUID, peerV4 + ":8080", false, "app "},
				{"the app calling itself on lo is not intercepted", m.pod, appUID, appUID, podV4 + ":9080", false, "app "},
			} {
				f.check(t)
			}
		})
	}
}

// TestTProxyLifecycle: CHECK sees the mangle rules and the policy route
// as well as nat; a repeated ADD repairs all three; DEL removes all three.
func TestTProxyLifecycle(t *testing.T) {
	s := tproxySettings(t)
	for _, b := range backends {
		for _, fam := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
			t.Run(string(b)+"/"+fam.String(), func(t *testing.T) {
				n := newNetns(t, "mcni-tp")
				if err := n.Run("ip", "link", "set", "lo", "up"); err != nil {
					t.Fatal(err)
				}
				tb := tablesFor(n, b)
				rs := redirect.Build(s, fam)
				if err := redirect.Apply(tb, rs); err != nil {
					t.Fatal(err)
				}
				if err := redirect.Apply(tb, rs); err != nil {
					t.Fatalf("a repeated ADD: %v", err)
				}
				if err := redirect.Verify(tb, rs); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
				if rule, route, err := tb.TProxyRoute(fam, *rs.Route); err != nil || !rule || !route {
					t.Fatalf("policy routing after ADD: rule=%v route=%v err=%v", rule, route, err)
				}
				if out, _ := n.Output("ip", famArg(fam), "rule", "show", "fwmark", "1337"); strings.Count(out, "lookup 133") != 1 {
					t.Fatalf("a repeated ADD must not duplicate the ip rule:\n%s", out)
				}
				// Tampering with each part is seen by CHECK and undone by ADD.
				ipt := iptables(b, fam)
				for _, tamper := range []struct {
					name, want string
					cmd        []string
				}{
					{"a mangle rule deleted", "TPROXY", []string{ipt, "-t", "mangle", "-F", "ISTIO_TPROXY"}},
					{"the mangle jump deleted", "missing: -A PREROUTING", []string{ipt, "-t", "mangle", "-D", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"}},
					{"the ip rule deleted", "missing: ip rule fwmark 1337 lookup 133", []string{"ip", famArg(fam), "rule", "del", "fwmark", "1337", "lookup", "133"}},
					{"the local route deleted", "missing: local default route", []string{"ip", famArg(fam), "route", "del", "local", "default", "dev", "lo", "table", "133"}},
				} {
					if err := n.Run(tamper.cmd[0], tamper.cmd[1:]...); err != nil {
						t.Fatalf("%s: %v", tamper.name, err)
					}
					err := redirect.Verify(tb, rs)
					if err == nil || !strings.Contains(err.Error(), tamper.want) {
						t.Fatalf("%s: CHECK = %v, want an error naming %q", tamper.name, err, tamper.want)
					}
					if err := redirect.Apply(tb, rs); err != nil {
						t.Fatalf("%s: ADD to repair: %v", tamper.name, err)
					}
					if err := redirect.Verify(tb, rs); err != nil {
						t.Fatalf("%s: CHECK after the repair: %v", tamper.name, err)
					}
				}
				if err := redirect.Cleanup(tb, fam); err != nil {
					t.Fatal(err)
				}
				assertNoTProxyState(t, n, tb, b, fam)
			})
		}
	}
}

// routeFails is the real tables with a policy route that cannot be added.
type routeFails struct{ *nat.Netns }

func (routeFails) AddTProxyRoute(redirect.Family, redirect.TProxyRoute) error {
	return errors.New("injected: RTNETLINK answers: Operation not permitted")
}

// TestTProxyRollback: when the route cannot be added, the ADD fails and
// leaves nothing of ours in nat or mangle (all or nothing).
func TestTProxyRollback(t *testing.T) {
	s := tproxySettings(t)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			n := newNetns(t, "mcni-tp")
			tb := tablesFor(n, b)
			err := redirect.Apply(routeFails{tb}, redirect.Build(s, redirect.IPv4))
			if err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("Apply = %v, want the route's error", err)
			}
			assertNoTProxyState(t, n, tb, b, redirect.IPv4)
		})
	}
}

func assertNoTProxyState(t *testing.T, n *cnitest.Netns, tb *nat.Netns, b nat.Backend, fam redirect.Family) {
	t.Helper()
	all, err := tb.SaveAll(fam)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(all, "ISTIO_") {
		t.Fatalf("mesh chains left behind:\n%s", all)
	}
	if rule, route, err := tb.TProxyRoute(fam, redirect.TProxyRoute{Mark: 1337, Table: 133}); err != nil || rule || route {
		t.Fatalf("policy routing left behind: rule=%v route=%v err=%v", rule, route, err)
	}
}

func famArg(fam redirect.Family) string {
	if fam == redirect.IPv6 {
		return "-6"
	}
	return "-4"
}

func iptables(b nat.Backend, fam redirect.Family) string {
	if fam == redirect.IPv6 {
		return "ip6tables-" + string(b)
	}
	return "iptables-" + string(b)
}
