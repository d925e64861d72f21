package agent

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	verbs        *prometheus.CounterVec   // plug-in verbs by verb, decision, cause
	addDuration  *prometheus.HistogramVec // plug-in's own ADD duration by decision
	podSource    *prometheus.CounterVec   // where the plug-in got the pod: cache, api, none
	podRequests  *prometheus.CounterVec   // socket pod answers by status
	events       *prometheus.CounterVec   // Events by reason and result (posted, failed, suppressed)
	socketErrors *prometheus.CounterVec   // refused or broken socket exchanges by kind
	cacheSynced  prometheus.Gauge
	cachePods    prometheus.Gauge
	watchErrors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		verbs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_plugin_verbs_total",
			Help: "Plug-in verbs reported to the agent, by verb (ADD, CHECK, DEL), decision (redirected, not-redirected, refused, bypassed, error) and cause.",
		}, []string{"verb", "decision", "cause"}),
		addDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mesh_cni_plugin_add_duration_seconds",
			Help:    "ADD duration as the plug-in measured it, by decision.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"decision"}),
		podSource: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_plugin_pod_source_total",
			Help: "Where the plug-in's ADD/CHECK got the pod: cache (this agent), api (its own GET), none (decided without the pod).",
		}, []string{"source"}),
		podRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_agent_pod_requests_total",
			Help: "Pod requests answered on the agent socket, by status (ok, miss, not-ready, error).",
		}, []string{"status"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_agent_events_total",
			Help: "Kubernetes Events, by reason and result (posted, failed, suppressed as a duplicate).",
		}, []string{"reason", "result"}),
		socketErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_agent_socket_errors_total",
			Help: "Agent socket exchanges refused or broken, by kind (peer, read, oversized, invalid, write, busy).",
		}, []string{"kind"}),
		cacheSynced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mesh_cni_agent_cache_synced",
			Help: "1 once the node's pod cache has synced with the API server.",
		}),
		cachePods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mesh_cni_agent_cache_pods",
			Help: "Pods of this node in the agent's cache.",
		}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mesh_cni_agent_watch_errors_total",
			Help: "Times the pod list/watch broke and was restarted.",
		}),
	}
	reg.MustRegister(m.verbs, m.addDuration, m.podSource, m.podRequests, m.events, m.socketErrors,
		m.cacheSynced, m.cachePods, m.watchErrors)
	return m
}
