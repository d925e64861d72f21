package readiness

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	ours     = corev1.Taint{Key: TaintKey, Value: TaintValue, Effect: TaintEffect}
	other    = corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}
	unreach  = corev1.Taint{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	oursExec = corev1.Taint{Key: TaintKey, Value: "x", Effect: corev1.TaintEffectNoExecute}
)

func TestRemovalPatch(t *testing.T) {
	cases := []struct {
		name    string
		taints  []corev1.Taint
		removes []string // paths, in order; nil: no patch
	}{
		{"no taints", nil, nil},
		{"only others", []corev1.Taint{other, unreach}, nil},
		{"ours alone", []corev1.Taint{ours}, []string{"/spec/taints/0"}},
		{"ours between others", []corev1.Taint{other, ours, unreach}, []string{"/spec/taints/1"}},
		{"ours twice (two effects), highest index first", []corev1.Taint{ours, other, oursExec}, []string{"/spec/taints/2", "/spec/taints/0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := RemovalPatch(c.taints)
			if err != nil {
				t.Fatal(err)
			}
			if c.removes == nil {
				if b != nil {
					t.Fatalf("patch for a node without the taint: %s", b)
				}
				return
			}
			var ops []struct {
				Op    string          `json:"op"`
				Path  string          `json:"path"`
				Value json.RawMessage `json:"value"`
			}
			if err := json.Unmarshal(b, &ops); err != nil {
				t.Fatal(err)
			}
			// First the guard: the whole list as read, byte for byte
			// what the API server serves.
			read, _ := json.Marshal(c.taints)
			if ops[0].Op != "test" || ops[0].Path != "/spec/taints" || string(ops[0].Value) != string(read) {
				t.Fatalf("first op is not a test of the taints read: %s", b)
			}
			var removes []string
			for _, op := range ops[1:] {
				if op.Op != "remove" {
					t.Fatalf("op %q in %s: only test and remove may appear", op.Op, b)
				}
				removes = append(removes, op.Path)
			}
			if !reflect.DeepEqual(removes, c.removes) {
				t.Errorf("removes %v, want %v", removes, c.removes)
			}
		})
	}
}

func TestHasTaint(t *testing.T) {
	if HasTaint([]corev1.Taint{other}) || !HasTaint([]corev1.Taint{other, oursExec}) {
		t.Error("HasTaint wrong")
	}
}
