package podcache

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Status is what the repair controller decides on beside pkg/pod's fields
// (kept here, not in pkg/pod: that package is on the plug-in's ADD path and
// every field there is decoded by every ADD).
type Status struct {
	Phase         corev1.PodPhase
	PodIPs        []string
	HostNetwork   bool
	Deleting      bool     // deletionTimestamp set
	OwnerKinds    []string // ownerReferences' kinds
	Controller    string   // "Kind/Name" of the controlling owner; "" for a bare pod
	RestartPolicy corev1.RestartPolicy
	Created       time.Time // creationTimestamp
	// NetworkReadyAt is when the condition PodReadyToStartContainers last
	// became True: the current sandbox got its network then. A new sandbox
	// of the same pod moves it (zero when the kubelet does not report it).
	NetworkReadyAt time.Time
}

func statusOf(p *corev1.Pod) Status {
	s := Status{
		Phase: p.Status.Phase, HostNetwork: p.Spec.HostNetwork,
		Deleting: p.DeletionTimestamp != nil, RestartPolicy: p.Spec.RestartPolicy,
		Created: p.CreationTimestamp.Time,
	}
	for _, ip := range p.Status.PodIPs {
		s.PodIPs = append(s.PodIPs, ip.IP)
	}
	if len(s.PodIPs) == 0 && p.Status.PodIP != "" {
		s.PodIPs = []string{p.Status.PodIP}
	}
	for _, o := range p.OwnerReferences {
		s.OwnerKinds = append(s.OwnerKinds, o.Kind)
		if o.Controller != nil && *o.Controller {
			s.Controller = o.Kind + "/" + o.Name
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReadyToStartContainers && c.Status == corev1.ConditionTrue {
			s.NetworkReadyAt = c.LastTransitionTime.Time
		}
	}
	return s
}
