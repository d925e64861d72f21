// Package podcheck decides whether a pod's traffic is redirected. It is pure:
// a pod and a config in, a verdict with a human reason out.
package podcheck

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

const (
	// ProxyContainer is the sidecar the pod must carry.
	ProxyContainer = "istio-proxy"
	// InitContainer programs the pod's rules itself (a pod injected without CNI
	// mode); programming them a second time would break it.
	InitContainer = "istio-init"
	// InjectKey disables the mesh for a pod, as annotation or label.
	InjectKey = "sidecar.istio.io/inject"
	// EnvDisableEnvoy on istio-proxy runs the agent without Envoy
	// (proxyless gRPC): nothing listens on 15001/15006.
	EnvDisableEnvoy = "DISABLE_ENVOY"
)

// Config is what the decision depends on.
type Config struct {
	ExcludeNamespaces  []string
	InstallerNamespace string // the DaemonSet's own pods ...
	InstallerPodPrefix string // ... are never redirected
	// DefaultProxy is the sidecar's identity when its securityContext and the
	// pod's do not set one; the zero value means Istio's 1337/1337.
	DefaultProxy redirect.Proxy
}

// Verdict is the decision and why.
type Verdict struct {
	Redirect bool
	Reason   string
	// Proxy is the sidecar's identity, set when Redirect is true.
	Proxy redirect.Proxy
}

func skip(format string, a ...any) Verdict { return Verdict{Reason: fmt.Sprintf(format, a...)} }

// PreLookup decides what can be decided from the namespace and name alone,
// before any Kubernetes client exists. ok is false when the pod must be read.
func PreLookup(namespace, name string, cfg Config) (v Verdict, decided bool) {
	if slices.Contains(cfg.ExcludeNamespaces, namespace) {
		return skip("namespace %q is excluded", namespace), true
	}
	if cfg.InstallerNamespace != "" && namespace == cfg.InstallerNamespace &&
		cfg.InstallerPodPrefix != "" && strings.HasPrefix(name, cfg.InstallerPodPrefix) {
		return skip("pod %s/%s is mesh-cni's own installer", namespace, name), true
	}
	return Verdict{}, false
}

// Check applies every condition to the pod.
func Check(p *pod.Pod, cfg Config) Verdict {
	if v, decided := PreLookup(p.Metadata.Namespace, p.Metadata.Name, cfg); decided {
		return v
	}
	proxy, ok := findProxy(p)
	if !ok {
		return skip("pod has no %s container", ProxyContainer)
	}
	if n := containerCount(p); n < 2 {
		return skip("pod has %d container; a sidecar pod has more than one", n)
	}
	if key, val, disabled := injectionDisabled(p); disabled {
		return skip("injection disabled by %s %s=%q", key, InjectKey, val)
	}
	for _, c := range p.Spec.InitContainers {
		if c.Name == InitContainer {
			return skip("pod has an %s init container that programs its own rules", InitContainer)
		}
	}
	if v, notProxied := noListeners(p, proxy); notProxied {
		return v
	}
	id := identity(p, proxy, cfg.DefaultProxy)
	reason := "pod qualifies: sidecar present, injection enabled"
	dns, why := captureDNS(p, proxy)
	id.CaptureDNS = dns
	if why != "" {
		reason += "; " + why
	}
	return Verdict{Redirect: true, Reason: reason, Proxy: id}
}

// noListeners finds the pods Istio's CNI leaves alone because nothing in
// them listens on the capture ports: redirecting would send their traffic
// into closed ports.
func noListeners(p *pod.Pod, proxy *pod.Container) (Verdict, bool) {
	if mode := strings.TrimSpace(p.Metadata.Annotations[redirect.AnnoInterceptionMode]); mode == redirect.ModeNone {
		return skip("annotation %s=%q: the pod asks for no interception", redirect.AnnoInterceptionMode, mode), true
	}
	if v, ok := proxy.Getenv(EnvDisableEnvoy); ok {
		if b, err := strconv.ParseBool(v); err == nil && b {
			return skip("%s has %s=%q: a proxyless agent, nothing listens on the capture ports", ProxyContainer, EnvDisableEnvoy, v), true
		}
	}
	// The injector writes "proxy sidecar"; "proxy router" is a gateway,
	// which receives traffic on its own ports and must not be captured.
	if len(proxy.Args) >= 2 && proxy.Args[0] == "proxy" && proxy.Args[1] != "" && proxy.Args[1] != "sidecar" {
		return skip("%s runs as %q, not a sidecar (args %q)", ProxyContainer, proxy.Args[1], strings.Join(proxy.Args[:2], " ")), true
	}
	return Verdict{}, false
}

// findProxy looks in the containers and the native sidecars (init containers
// that keep running, restartPolicy Always).
func findProxy(p *pod.Pod) (*pod.Container, bool) {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == ProxyContainer {
			return &p.Spec.Containers[i], true
		}
	}
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if c.Name == ProxyContainer && nativeSidecar(c) {
			return c, true
		}
	}
	return nil, false
}

func nativeSidecar(c *pod.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == pod.RestartPolicyAlways
}

func containerCount(p *pod.Pod) int {
	n := len(p.Spec.Containers)
	for i := range p.Spec.InitContainers {
		if nativeSidecar(&p.Spec.InitContainers[i]) {
			n++
		}
	}
	return n
}

// injectionDisabled follows Istio: the label wins over the annotation, and
// only a value that parses as false disables.
func injectionDisabled(p *pod.Pod) (source, value string, disabled bool) {
	if v, ok := p.Metadata.Labels[InjectKey]; ok {
		source, value = "label", v
	} else if v, ok := p.Metadata.Annotations[InjectKey]; ok {
		source, value = "annotation", v
	} else {
		return "", "", false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(value))
	return source, value, err == nil && !b
}

// identity is who the proxy runs as: its own securityContext, else the
// pod's, else the node default. A resulting 0 counts as unset, as in
// Istio: with capNetBindService the injector runs the proxy as root
// (runAsUser 0, runAsGroup 1337), and "--uid-owner 0" would let every root
// process in the pod bypass capture while the proxy itself was captured.
func identity(p *pod.Pod, c *pod.Container, def redirect.Proxy) redirect.Proxy {
	// A zero node default means Istio's 1337/1337.
	def.UID = orDefault(ptrTo(int64(def.UID)), redirect.DefaultProxyUID)
	def.GID = orDefault(ptrTo(int64(def.GID)), redirect.DefaultProxyGID)
	var uid, gid *int64
	// The container's own context wins over the pod's, as in the kubelet.
	for _, sc := range []*pod.SecurityContext{p.Spec.SecurityContext, c.SecurityContext} {
		if sc == nil {
			continue
		}
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	return redirect.Proxy{UID: orDefault(uid, def.UID), GID: orDefault(gid, def.GID)}
}

func ptrTo[T any](v T) *T { return &v }

// orDefault keeps a set, non-root, in-range ID; anything else is the default.
func orDefault(id *int64, def uint32) uint32 {
	if id == nil || *id <= 0 || *id > math.MaxUint32 {
		return def
	}
	return uint32(*id)
}
