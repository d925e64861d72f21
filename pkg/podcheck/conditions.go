package podcheck

import (
	"fmt"
	"slices"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// Condition is one eligibility condition as an operator reads it: what is
// required, whether the pod meets it, and why.
type Condition struct {
	Condition string `json:"condition"`
	OK        bool   `json:"ok"`
	Detail    string `json:"detail"`
}

// NotEvaluated starts the detail of a condition that could not be
// evaluated because an earlier one failed.
const NotEvaluated = "not evaluated"

// Evaluate applies every condition to the pod, not only up to the first
// that fails, and returns each with its outcome and the verdict Check gives
// (the verdict is Check's own, so the two cannot disagree). Conditions that
// read the sidecar are reported as not evaluated when there is none.
func Evaluate(p *pod.Pod, cfg Config) ([]Condition, Verdict) {
	ns, name := p.Metadata.Namespace, p.Metadata.Name
	var out []Condition
	add := func(cond string, ok bool, detail string) {
		out = append(out, Condition{Condition: cond, OK: ok, Detail: detail})
	}
	if slices.Contains(cfg.ExcludeNamespaces, ns) {
		add("namespace not excluded", false, fmt.Sprintf("namespace %q is excluded", ns))
	} else {
		add("namespace not excluded", true, fmt.Sprintf("namespace %q is not in excludeNamespaces %q", ns, cfg.ExcludeNamespaces))
	}
	if _, decided := PreLookup(ns, name, Config{InstallerNamespace: cfg.InstallerNamespace, InstallerPodPrefix: cfg.InstallerPodPrefix}); decided {
		add("not mesh-cni's own installer", false, fmt.Sprintf("pod %s/%s is mesh-cni's own installer", ns, name))
	} else {
		add("not mesh-cni's own installer", true, "")
	}
	proxy, hasProxy := findProxy(p)
	if hasProxy {
		add("has an "+ProxyContainer+" container", true, "")
	} else {
		add("has an "+ProxyContainer+" container", false, fmt.Sprintf("pod has no %s container", ProxyContainer))
	}
	if n := containerCount(p); n < 2 {
		add("more than one container", false, fmt.Sprintf("pod has %d container; a sidecar pod has more than one", n))
	} else {
		add("more than one container", true, fmt.Sprintf("pod has %d containers", n))
	}
	if key, val, disabled := injectionDisabled(p); disabled {
		add("injection not disabled", false, fmt.Sprintf("injection disabled by %s %s=%q", key, InjectKey, val))
	} else {
		add("injection not disabled", true, "")
	}
	hasInit := slices.ContainsFunc(p.Spec.InitContainers, func(c pod.Container) bool { return c.Name == InitContainer })
	if hasInit {
		add("no "+InitContainer+" init container", false, fmt.Sprintf("pod has an %s init container that programs its own rules", InitContainer))
	} else {
		add("no "+InitContainer+" init container", true, "")
	}
	const listening = "the proxy listens on the capture ports"
	switch {
	case !hasProxy:
		add(listening, false, NotEvaluated+": no "+ProxyContainer+" container")
	default:
		if v, notProxied := noListeners(p, proxy); notProxied {
			add(listening, false, v.Reason)
		} else {
			add(listening, true, "interception mode is not NONE, Envoy enabled, a sidecar (not a gateway)")
		}
	}
	return out, Check(p, cfg)
}
