package plugin

import "strings"

// podRef is the pod the runtime is setting up, from CNI_ARGS.
type podRef struct {
	Namespace, Name string
	// UID is K8S_POD_UID when the runtime passes it (containerd and CRI-O
	// do): it tells this pod from an earlier one of the same name.
	UID string
}

func (p podRef) String() string { return p.Namespace + "/" + p.Name }

// parsePodRef reads K8S_POD_NAMESPACE and K8S_POD_NAME from CNI_ARGS
// ("K=V;K=V"). Unknown keys are ignored whatever IgnoreUnknown says: other
// runtimes add their own. ok is false when this is not a Kubernetes pod.
func parsePodRef(cniArgs string) (ref podRef, ok bool) {
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.TrimSpace(k) {
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
