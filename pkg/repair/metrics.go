package repair

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	unmeshed prometheus.Gauge
	repairs  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		unmeshed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mesh_cni_agent_unmeshed_pods",
			Help: "Pods of this node that qualify for the mesh but run without the plug-in's redirect (every repair mode counts them).",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_agent_repairs_total",
			Help: "Actions on unmeshed pods, by repair mode (delete, label, repair, off) and result (success, failed, skipped).",
		}, []string{"mode", "result"}),
	}
	reg.MustRegister(m.unmeshed, m.repairs)
	return m
}
