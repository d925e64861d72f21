package readiness

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	removed prometheus.Counter
	ready   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mesh_cni_agent_readiness_taint_removed_total",
			Help: "Times the agent removed the readiness taint " + TaintKey + " from its node.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mesh_cni_agent_node_ready",
			Help: "1 while the node is ready for meshed pods: installation in place, node agent ready, plug-in STATUS passes.",
		}),
	}
	reg.MustRegister(m.removed, m.ready)
	return m
}
