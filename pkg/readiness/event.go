package readiness

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReasonTaintRemoved is the Node Event posted when the taint is lifted.
const ReasonTaintRemoved = "ReadinessTaintRemoved"

// eventNamespace is where Events about cluster-scoped objects go (the
// kubelet's node Events are there too).
const eventNamespace = metav1.NamespaceDefault

// postRemoved records the lift as a Normal Event on the node. Best effort:
// a failure is logged, never retried (the taint is gone either way).
func (l *Lifter) postRemoved(ctx context.Context, node *corev1.Node, reason string) {
	if l.cfg.Events == nil {
		return
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: node.Name + ".", Namespace: eventNamespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node.Name, UID: node.UID,
			ResourceVersion: node.ResourceVersion},
		Reason:  ReasonTaintRemoved,
		Message: "mesh-cni removed the taint " + TaintKey + ": " + reason,
		Type:    corev1.EventTypeNormal,
		Source:  corev1.EventSource{Component: "mesh-cni-agent", Host: node.Name},
		Count:   1, FirstTimestamp: now, LastTimestamp: now,
	}
	if _, err := l.cfg.Events.Events(eventNamespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		l.log.Warn("cannot post the "+ReasonTaintRemoved+" Event on the node", "node", node.Name, "error", err.Error())
	}
}
