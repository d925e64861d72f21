package podcheck

import (
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

var cfg = Config{
	ExcludeNamespaces:  []string{"kube-system", "istio-system"},
	InstallerNamespace: "mesh-cni-system",
	InstallerPodPrefix: "mesh-cni-node-",
}

func ptr[T any](v T) *T { return &v }

// pod builds the seed's productpage with a sidecar; mods vary it.
func newPod(mods ...func(*pod.Pod)) *pod.Pod {
	p := &pod.Pod{
		Metadata: pod.Metadata{Namespace: "default", Name: "productpage-v1-abc"},
		Spec: pod.Spec{Containers: []pod.Container{
			{Name: "productpage"}, {Name: "istio-proxy"},
		}},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func TestCheck(t *testing.T) {
	always := ptr(pod.RestartPolicyAlways)
	cases := []struct {
		name   string
		p      *pod.Pod
		want   bool
		reason string
		proxy  redirect.Proxy
	}{
		{"meshed", newPod(), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"excluded namespace", newPod(func(p *pod.Pod) { p.Metadata.Namespace = "kube-system" }), false, `namespace "kube-system" is excluded`, redirect.Proxy{}},
		{"other excluded namespace", newPod(func(p *pod.Pod) { p.Metadata.Namespace = "istio-system" }), false, "excluded", redirect.Proxy{}},
		{"installer pod", newPod(func(p *pod.Pod) { p.Metadata.Namespace, p.Metadata.Name = "mesh-cni-system", "mesh-cni-node-x7k" }), false, "own installer", redirect.Proxy{}},
		{"installer namespace, other pod", newPod(func(p *pod.Pod) { p.Metadata.Namespace, p.Metadata.Name = "mesh-cni-system", "debug" }), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"no sidecar", newPod(func(p *pod.Pod) { p.Spec.Containers[1].Name = "logger" }), false, "no istio-proxy container", redirect.Proxy{}},
		{"sidecar only", newPod(func(p *pod.Pod) { p.Spec.Containers = p.Spec.Containers[1:] }), false, "has 1 container", redirect.Proxy{}},
		{"native sidecar", newPod(func(p *pod.Pod) {
			p.Spec.Containers = p.Spec.Containers[:1]
			p.Spec.InitContainers = []pod.Container{{Name: "istio-proxy", RestartPolicy: always}}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"init container named istio-proxy is not a sidecar", newPod(func(p *pod.Pod) {
			p.Spec.Containers = p.Spec.Containers[:1]
			p.Spec.InitContainers = []pod.Container{{Name: "istio-proxy"}}
		}), false, "no istio-proxy", redirect.Proxy{}},
		{"native sidecar alone", newPod(func(p *pod.Pod) {
			p.Spec.Containers = []pod.Container{}
			p.Spec.InitContainers = []pod.Container{{Name: "istio-proxy", RestartPolicy: always}}
		}), false, "has 1 container", redirect.Proxy{}},
		{"annotation false", newPod(func(p *pod.Pod) { p.Metadata.Annotations = map[string]string{InjectKey: "false"} }), false, `annotation sidecar.istio.io/inject="false"`, redirect.Proxy{}},
		{"annotation 0", newPod(func(p *pod.Pod) { p.Metadata.Annotations = map[string]string{InjectKey: "0"} }), false, "injection disabled", redirect.Proxy{}},
		{"annotation true", newPod(func(p *pod.Pod) { p.Metadata.Annotations = map[string]string{InjectKey: "true"} }), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"annotation garbage", newPod(func(p *pod.Pod) { p.Metadata.Annotations = map[string]string{InjectKey: "no"} }), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"label false wins over annotation true", newPod(func(p *pod.Pod) {
			p.Metadata.Labels = map[string]string{InjectKey: "false"}
			p.Metadata.Annotations = map[string]string{InjectKey: "true"}
		}), false, "label", redirect.Proxy{}},
		{"label true wins over annotation false", newPod(func(p *pod.Pod) {
			p.Metadata.Labels = map[string]string{InjectKey: "true"}
			p.Metadata.Annotations = map[string]string{InjectKey: "false"}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"istio-init present", newPod(func(p *pod.Pod) { p.Spec.InitContainers = []pod.Container{{Name: "istio-init"}} }), false, "istio-init", redirect.Proxy{}},
		{"proxy identity from container", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(2000)), RunAsGroup: ptr(int64(3000))}
		}), true, "qualifies", redirect.Proxy{UID: 2000, GID: 3000}},
		{"proxy identity from pod, container wins", newPod(func(p *pod.Pod) {
			p.Spec.SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(1000))}
			p.Spec.Containers[1].SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(1337))}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1000}},

		// Issue 12.1: a root proxy (capNetBindService) is not "--uid-owner 0".
		{"capNetBindService: runAsUser 0 is unset", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(0)), RunAsGroup: ptr(int64(1337))}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"runAsGroup 0 is unset", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(2000)), RunAsGroup: ptr(int64(0))}
		}), true, "qualifies", redirect.Proxy{UID: 2000, GID: 1337}},
		{"container root over pod 2000 is the default, not the pod's", newPod(func(p *pod.Pod) {
			p.Spec.SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(2000))}
			p.Spec.Containers[1].SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(0))}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"pod-level root", newPod(func(p *pod.Pod) {
			p.Spec.SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(0)), RunAsGroup: ptr(int64(0))}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"negative id", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].SecurityContext = &pod.SecurityContext{RunAsUser: ptr(int64(-5))}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},

		// Issue 12.2: NONE is left alone, not an error.
		{"interceptionMode NONE", newPod(func(p *pod.Pod) {
			p.Metadata.Annotations = map[string]string{redirect.AnnoInterceptionMode: "NONE"}
		}), false, "asks for no interception", redirect.Proxy{}},
		{"interceptionMode REDIRECT", newPod(func(p *pod.Pod) {
			p.Metadata.Annotations = map[string]string{redirect.AnnoInterceptionMode: "REDIRECT"}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},

		// Issue 12.4: nothing listens on 15001/15006.
		{"proxyless: DISABLE_ENVOY=true", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].Env = []pod.EnvVar{{Name: "DISABLE_ENVOY", Value: "true"}}
		}), false, "proxyless", redirect.Proxy{}},
		{"DISABLE_ENVOY=false is a sidecar", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].Env = []pod.EnvVar{{Name: "DISABLE_ENVOY", Value: "false"}}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"DISABLE_ENVOY last entry wins", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].Env = []pod.EnvVar{{Name: "DISABLE_ENVOY", Value: "false"}, {Name: "DISABLE_ENVOY", Value: "1"}}
		}), false, "proxyless", redirect.Proxy{}},
		{"DISABLE_ENVOY on another container does not count", newPod(func(p *pod.Pod) {
			p.Spec.Containers[0].Env = []pod.EnvVar{{Name: "DISABLE_ENVOY", Value: "true"}}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"gateway: proxy router", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].Args = []string{"proxy", "router", "--domain", "x"}
		}), false, `runs as "router"`, redirect.Proxy{}},
		{"native sidecar gateway", newPod(func(p *pod.Pod) {
			p.Spec.Containers = p.Spec.Containers[:1]
			p.Spec.InitContainers = []pod.Container{{Name: "istio-proxy", RestartPolicy: always, Args: []string{"proxy", "router"}}}
		}), false, `runs as "router"`, redirect.Proxy{}},
		{"proxy sidecar args", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].Args = []string{"proxy", "sidecar", "--domain", "x"}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},

		// Issue 12.8: DNS capture from the proxy's env or proxy.istio.io/config.
		{"DNS capture from env", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].Env = []pod.EnvVar{{Name: "ISTIO_META_DNS_CAPTURE", Value: "true"}}
		}), true, "DNS captured", redirect.Proxy{UID: 1337, GID: 1337, CaptureDNS: true}},
		{"DNS capture from proxy.istio.io/config", newPod(func(p *pod.Pod) {
			p.Metadata.Annotations = map[string]string{"proxy.istio.io/config": "proxyMetadata:\n  ISTIO_META_DNS_CAPTURE: \"true\"\n"}
		}), true, "proxyMetadata.ISTIO_META_DNS_CAPTURE", redirect.Proxy{UID: 1337, GID: 1337, CaptureDNS: true}},
		{"DNS capture: env false wins over annotation", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].Env = []pod.EnvVar{{Name: "ISTIO_META_DNS_CAPTURE", Value: "false"}}
			p.Metadata.Annotations = map[string]string{"proxy.istio.io/config": `{"proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"true"}}`}
		}), true, "qualifies", redirect.Proxy{UID: 1337, GID: 1337}},
		{"DNS capture: garbage value", newPod(func(p *pod.Pod) {
			p.Spec.Containers[1].Env = []pod.EnvVar{{Name: "ISTIO_META_DNS_CAPTURE", Value: "yes please"}}
		}), true, "not a boolean", redirect.Proxy{UID: 1337, GID: 1337}},
		{"DNS capture: unreadable annotation", newPod(func(p *pod.Pod) {
			p.Metadata.Annotations = map[string]string{"proxy.istio.io/config": "proxyMetadata: [unclosed"}
		}), true, "unreadable", redirect.Proxy{UID: 1337, GID: 1337}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Check(c.p, cfg)
			if v.Redirect != c.want || !strings.Contains(v.Reason, c.reason) || v.Proxy != c.proxy {
				t.Fatalf("Check = %+v, want redirect=%v reason~%q proxy=%+v", v, c.want, c.reason, c.proxy)
			}
		})
	}
}

func TestPreLookup(t *testing.T) {
	if _, decided := PreLookup("default", "x", cfg); decided {
		t.Fatal("a default-namespace pod must be looked up")
	}
	if v, decided := PreLookup("kube-system", "coredns", cfg); !decided || v.Redirect {
		t.Fatalf("kube-system: %+v %v", v, decided)
	}
	if _, decided := PreLookup("mesh-cni-system", "mesh-cni-node-1", Config{InstallerNamespace: "mesh-cni-system"}); decided {
		t.Fatal("an empty prefix must not match every pod of the namespace")
	}
}

// TestEvaluateAgreesWithCheck: every pod of TestCheck's kind gets Check's
// verdict from Evaluate, a failing condition exactly when Check skips, and
// the first failing condition's detail is Check's reason.
func TestEvaluateAgreesWithCheck(t *testing.T) {
	always := ptr(pod.RestartPolicyAlways)
	pods := map[string]*pod.Pod{
		"meshed":       newPod(),
		"excluded":     newPod(func(p *pod.Pod) { p.Metadata.Namespace = "kube-system" }),
		"installer":    newPod(func(p *pod.Pod) { p.Metadata.Namespace, p.Metadata.Name = "mesh-cni-system", "mesh-cni-node-x7k" }),
		"no sidecar":   newPod(func(p *pod.Pod) { p.Spec.Containers[1].Name = "logger" }),
		"sidecar only": newPod(func(p *pod.Pod) { p.Spec.Containers = p.Spec.Containers[1:] }),
		"disabled":     newPod(func(p *pod.Pod) { p.Metadata.Labels = map[string]string{InjectKey: "false"} }),
		"istio-init":   newPod(func(p *pod.Pod) { p.Spec.InitContainers = []pod.Container{{Name: InitContainer}} }),
		"mode none":    newPod(func(p *pod.Pod) { p.Metadata.Annotations = map[string]string{redirect.AnnoInterceptionMode: "NONE"} }),
		"gateway":      newPod(func(p *pod.Pod) { p.Spec.Containers[1].Args = []string{"proxy", "router"} }),
		"proxyless":    newPod(func(p *pod.Pod) { p.Spec.Containers[1].Env = []pod.EnvVar{{Name: EnvDisableEnvoy, Value: "true"}} }),
		"native sidecar": newPod(func(p *pod.Pod) {
			p.Spec.Containers = p.Spec.Containers[:1]
			p.Spec.InitContainers = []pod.Container{{Name: "istio-proxy", RestartPolicy: always}}
		}),
		"two failures": newPod(func(p *pod.Pod) { p.Metadata.Namespace = "kube-system"; p.Spec.Containers[1].Name = "logger" }),
	}
	for name, p := range pods {
		t.Run(name, func(t *testing.T) {
			conds, v := Evaluate(p, cfg)
			if want := Check(p, cfg); v != want {
				t.Fatalf("Evaluate verdict %+v, Check %+v", v, want)
			}
			if len(conds) != 7 {
				t.Fatalf("%d conditions, want all 7: %+v", len(conds), conds)
			}
			var first *Condition
			fails := 0
			for i := range conds {
				if !conds[i].OK {
					fails++
					if first == nil {
						first = &conds[i]
					}
				}
			}
			if v.Redirect != (first == nil) {
				t.Fatalf("redirect=%v but failing conditions %+v", v.Redirect, conds)
			}
			if first != nil && first.Detail != v.Reason {
				t.Fatalf("first failing condition says %q, Check says %q", first.Detail, v.Reason)
			}
			if name == "two failures" && fails < 2 {
				t.Fatalf("Evaluate stopped at the first failure: %+v", conds)
			}
		})
	}
}
