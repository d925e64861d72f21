package pod

import (
	"errors"
	"fmt"
	"strings"

	sigsjson "sigs.k8s.io/json"
)

// Ref names the pod a runtime is setting up, from CNI_ARGS. UID is empty
// when the runtime did not pass K8S_POD_UID.
type Ref struct {
	Namespace, Name, UID string
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// ErrNotThePod: the API answered, but not with the pod that was asked for
// (an empty object, null, another pod, another kind, another UID).
var ErrNotThePod = errors.New("the answer is not the requested pod")

// Decode parses a pod as the API serves it. Keys match case-sensitively, as
// the API machinery's own decoder does: {"KIND": ...} is not a kind.
func Decode(body []byte) (*Pod, error) {
	var p Pod
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// CheckIdentity accepts p only if it is exactly the pod want names: kind
// Pod of apiVersion v1, its namespace and name, and its UID when want has
// one. Nothing is decided on an answer about some other object.
func CheckIdentity(p *Pod, want Ref) error {
	if p == nil {
		return fmt.Errorf("%w %s: no object", ErrNotThePod, want)
	}
	var diffs []string
	for _, f := range []struct{ key, got, want string }{
		{"kind", p.Kind, "Pod"},
		{"apiVersion", p.APIVersion, "v1"},
		{"metadata.namespace", p.Metadata.Namespace, want.Namespace},
		{"metadata.name", p.Metadata.Name, want.Name},
	} {
		if f.got != f.want {
			diffs = append(diffs, fmt.Sprintf("%s %q (want %q)", f.key, f.got, f.want))
		}
	}
	if want.UID != "" && p.Metadata.UID != want.UID {
		diffs = append(diffs, fmt.Sprintf("metadata.uid %q (want %q, the runtime's K8S_POD_UID)", p.Metadata.UID, want.UID))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w %s: %s", ErrNotThePod, want, strings.Join(diffs, ", "))
	}
	return nil
}
