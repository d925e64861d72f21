// Package podcheck decides whether a pod's traffic is redirected. It is pure:
// a pod and a config in, a verdict with a human reason out.
package podcheck

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

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
func Check(pod *corev1.Pod, cfg Config) Verdict {
	if v, decided := PreLookup(pod.Namespace, pod.Name, cfg); decided {
		return v
	}
	proxy, ok := findProxy(pod)
	if !ok {
		return skip("pod has no %s container", ProxyContainer)
	}
	if n := containerCount(pod); n < 2 {
		return skip("pod has %d container; a sidecar pod has more than one", n)
	}
	if key, val, disabled := injectionDisabled(pod); disabled {
		return skip("injection disabled by %s %s=%q", key, InjectKey, val)
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == InitContainer {
			return skip("pod has an %s init container that programs its own rules", InitContainer)
		}
	}
	return Verdict{Redirect: true, Reason: "pod qualifies: sidecar present, injection enabled", Proxy: identity(pod, proxy, cfg.DefaultProxy)}
}

// findProxy looks in the containers and the native sidecars (init containers
// that keep running, restartPolicy Always).
func findProxy(pod *corev1.Pod) (*corev1.Container, bool) {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ProxyContainer {
			return &pod.Spec.Containers[i], true
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.Name == ProxyContainer && nativeSidecar(c) {
			return c, true
		}
	}
	return nil, false
}

func nativeSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func containerCount(pod *corev1.Pod) int {
	n := len(pod.Spec.Containers)
	for i := range pod.Spec.InitContainers {
		if nativeSidecar(&pod.Spec.InitContainers[i]) {
			n++
		}
	}
	return n
}

// injectionDisabled follows Istio: the label wins over the annotation, and
// only a value that parses as false disables.
func injectionDisabled(pod *corev1.Pod) (source, value string, disabled bool) {
	if v, ok := pod.Labels[InjectKey]; ok {
		source, value = "label", v
	} else if v, ok := pod.Annotations[InjectKey]; ok {
		source, value = "annotation", v
	} else {
		return "", "", false
	}
	b, err := strconv.ParseBool(strings.TrimSpace(value))
	return source, value, err == nil && !b
}

// identity is who the proxy runs as: its own securityContext, else the
// pod's, else the node default.
func identity(pod *corev1.Pod, c *corev1.Container, def redirect.Proxy) redirect.Proxy {
	p := def
	if p == (redirect.Proxy{}) {
		p = redirect.Proxy{UID: redirect.DefaultProxyUID, GID: redirect.DefaultProxyGID}
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			p.UID = uint32(*psc.RunAsUser)
		}
		if psc.RunAsGroup != nil {
			p.GID = uint32(*psc.RunAsGroup)
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			p.UID = uint32(*sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			p.GID = uint32(*sc.RunAsGroup)
		}
	}
	return p
}
