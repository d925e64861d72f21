// Package pod is the part of a Kubernetes Pod that mesh-cni decides on,
// decoded from the API's JSON. It is deliberately not k8s.io/api/core/v1:
// that package's initialisation alone costs every plug-in exec about 4 ms
// (a quarter of an excluded-namespace ADD on a small node), for hundreds of
// types the plug-in never reads. Field names and JSON keys are the API's.
package pod

// Pod is a pod as the API serves it, reduced to what eligibility and the
// redirect settings read.
type Pod struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
}

// Metadata is the pod's identity and the labels/annotations that steer it.
type Metadata struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	UID         string            `json:"uid,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Spec holds the containers and the pod-level security context.
type Spec struct {
	SecurityContext *SecurityContext `json:"securityContext,omitempty"`
	InitContainers  []Container      `json:"initContainers,omitempty"`
	Containers      []Container      `json:"containers"`
}

// Container is one container; RestartPolicy "Always" on an init container
// makes it a native sidecar.
type Container struct {
	Name            string           `json:"name"`
	RestartPolicy   *string          `json:"restartPolicy,omitempty"`
	SecurityContext *SecurityContext `json:"securityContext,omitempty"`
	// Args and Env of istio-proxy say what kind of proxy it is: "proxy
	// router" is a gateway, DISABLE_ENVOY a proxyless agent, and
	// ISTIO_META_DNS_CAPTURE asks for DNS capture.
	Args []string `json:"args,omitempty"`
	Env  []EnvVar `json:"env,omitempty"`
}

// SecurityContext carries the identity a container runs as.
type SecurityContext struct {
	RunAsUser  *int64 `json:"runAsUser,omitempty"`
	RunAsGroup *int64 `json:"runAsGroup,omitempty"`
}

// RestartPolicyAlways is the init-container restart policy of a native sidecar.
const RestartPolicyAlways = "Always"

// EnvVar is a container environment variable; a value taken from a
// ConfigMap or Secret (valueFrom) reads as empty, which is what Istio's CNI
// sees too.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// Getenv returns the container's last value of name (the kubelet lets a
// later entry win) and whether it is set.
func (c *Container) Getenv(name string) (string, bool) {
	for i := len(c.Env) - 1; i >= 0; i-- {
		if c.Env[i].Name == name {
			return c.Env[i].Value, true
		}
	}
	return "", false
}
