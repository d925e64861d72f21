package podcheck

import (
	"testing"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// FuzzCheck: whatever the pod carries, Check never panics and never hands
// out a root identity (issue 12.1: "--uid-owner 0" would exempt every root
// process from capture).
func FuzzCheck(f *testing.F) {
	f.Add(int64(0), int64(1337), "true", "proxy", "router", "NONE", "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n")
	f.Add(int64(1337), int64(1337), "false", "proxy", "sidecar", "REDIRECT", "")
	f.Add(int64(-1), int64(0), "1", "", "", "TPROXY", "{proxyMetadata: [")
	f.Fuzz(func(t *testing.T, uid, gid int64, disable, arg0, arg1, mode, proxyConfig string) {
		p := newPod(func(p *pod.Pod) {
			p.Metadata.Annotations = map[string]string{"sidecar.istio.io/interceptionMode": mode, AnnoProxyConfig: proxyConfig}
			c := &p.Spec.Containers[1]
			c.SecurityContext = &pod.SecurityContext{RunAsUser: &uid, RunAsGroup: &gid}
			c.Env = []pod.EnvVar{{Name: EnvDisableEnvoy, Value: disable}, {Name: EnvDNSCapture, Value: disable}}
			c.Args = []string{arg0, arg1}
		})
		v := Check(p, cfg)
		if v.Redirect && (v.Proxy.UID == 0 || v.Proxy.GID == 0) {
			t.Fatalf("redirected with a root identity %+v for runAsUser=%d runAsGroup=%d", v.Proxy, uid, gid)
		}
		if !v.Redirect && v.Reason == "" {
			t.Fatal("a skip without a reason")
		}
		conds, ev := Evaluate(p, cfg)
		if ev != v {
			t.Fatalf("Evaluate's verdict %+v is not Check's %+v", ev, v)
		}
		for _, c := range conds {
			if !c.OK {
				if c.Detail != v.Reason {
					t.Fatalf("first failing condition %q, Check's reason %q", c.Detail, v.Reason)
				}
				break
			}
		}
	})
}
