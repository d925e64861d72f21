package readiness

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// The readiness taint (fixed name, docs/taint.md).
const (
	TaintKey    = "mesh-cni.io/not-ready"
	TaintValue  = "true"
	TaintEffect = corev1.TaintEffectNoSchedule
)

// jsonPatchOp is one RFC 6902 operation.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// RemovalPatch is the JSON patch that removes every taint with TaintKey
// from taints (the node's spec.taints as just read) and nothing else, or
// nil when there is none. Its first operation tests that spec.taints is
// still exactly taints: if anyone changed them since the read, the API
// server refuses the whole patch and the caller reads again. It is the
// only patch this package sends: there is no way to add a taint.
func RemovalPatch(taints []corev1.Taint) ([]byte, error) {
	var idx []int
	for i, t := range taints {
		if t.Key == TaintKey {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil, nil
	}
	ops := []jsonPatchOp{{Op: "test", Path: "/spec/taints", Value: taints}}
	// Highest index first: each removal leaves the lower indices in place.
	for i := len(idx) - 1; i >= 0; i-- {
		ops = append(ops, jsonPatchOp{Op: "remove", Path: fmt.Sprintf("/spec/taints/%d", idx[i])})
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("readiness taint patch: %w", err)
	}
	return b, nil
}

// HasTaint says whether taints hold the readiness taint (any value or
// effect: the key is ours).
func HasTaint(taints []corev1.Taint) bool {
	for _, t := range taints {
		if t.Key == TaintKey {
			return true
		}
	}
	return false
}
