package plugintoken

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.CounterVec
	expiry   prometheus.Gauge
	valid    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_plugin_token_requests_total",
			Help: "TokenRequests for the plug-in's service account, by result (ok, forbidden, error).",
		}, []string{"result"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mesh_cni_plugin_token_expiry_timestamp_seconds",
			Help: "When the plug-in's current token expires (unix seconds; 0: none yet).",
		}),
		valid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mesh_cni_plugin_token_valid",
			Help: "1 while a token that has not expired is held for the plug-in, else 0 (the plug-in's fallback GET is refused).",
		}),
	}
	m.requests.WithLabelValues("ok")
	m.requests.WithLabelValues("forbidden")
	m.requests.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.requests, m.expiry, m.valid)
	}
	return m
}
