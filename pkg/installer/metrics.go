package installer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	installs      *prometheus.CounterVec // writes of our files, by file
	repairs       *prometheus.CounterVec // drift repaired after the first install, by reason
	ready         prometheus.Gauge
	owner         prometheus.Gauge
	tokenRefresh  prometheus.Counter
	driftWarnings prometheus.Counter
	reconcileErrs prometheus.Counter
	conflicts     prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		installs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_installs_total",
			Help: "Files written by the installer, by file (binary, kubeconfig, token, conflist).",
		}, []string{"file"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mesh_cni_repairs_total",
			Help: "Drift repaired after the installation was in place, by reason (missing, not_last, differs, duplicate, conf_file, moved, binary, kubeconfig, owner).",
		}, []string{"reason"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mesh_cni_ready",
			Help: "1 while the plug-in binary, its kubeconfig and the mesh-cni config entry are all in place.",
		}),
		owner: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mesh_cni_owner",
			Help: "1 while this instance owns the node's installation, 0 after another instance took over.",
		}),
		tokenRefresh: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mesh_cni_token_refreshes_total",
			Help: "Times the plug-in's token file was replaced (a refreshed plug-in token, or a rotated service account token it copies).",
		}),
		driftWarnings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mesh_cni_drift_warnings_total",
			Help: "Times something kept undoing the mesh-cni entry more often than --drift-warn-count per --drift-warn-window.",
		}),
		reconcileErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mesh_cni_reconcile_errors_total",
			Help: "Reconcile passes that failed (and will be retried).",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mesh_cni_write_conflicts_total",
			Help: "Config writes that gave way because another writer (the primary CNI) changed the file after it was read; the newer content is merged instead.",
		}),
	}
	reg.MustRegister(m.installs, m.repairs, m.ready, m.owner, m.tokenRefresh, m.driftWarnings, m.reconcileErrs, m.conflicts)
	return m
}

func defaultRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
