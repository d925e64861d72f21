package plugin

import (
	"strings"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// parsePodRef reads K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID from
// CNI_ARGS ("K=V;K=V"). Keys match exactly and the last of a repeated key
// wins, as in libcni's types.LoadArgs (what the primary plug-in reads), so
// both agree on the pod. Unlike LoadArgs, unknown keys are ignored
// whatever IgnoreUnknown says (other runtimes add their own), and a value
// may hold '='. ok is false when this is not a Kubernetes
// pod. The UID is optional (not every runtime passes it); when present the
// API's answer must carry it (pod.CheckIdentity).
func parsePodRef(cniArgs string) (ref pod.Ref, ok bool) {
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			ref.Namespace = v
		case "K8S_POD_NAME":
			ref.Name = v
		case "K8S_POD_UID":
			ref.UID = v
		}
	}
	return ref, ref.Namespace != "" && ref.Name != ""
}
