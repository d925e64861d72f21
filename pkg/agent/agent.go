package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/podcache"
	"github.com/meshcni/mesh-cni/pkg/repair"
)

// UserAgent is what the agent's requests carry, so the API server's audit
// log tells them from the plug-in's ("mesh-cni").
const UserAgent = "mesh-cni-agent"

// Agent is one node agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	cache  *podcache.Cache
	ln     *socketListener
	srv    *server
	rep    *reporter
	events *eventPoster
	reg    prometheus.Registerer
	repair *repair.Controller // nil until EnableRepair

	reports   chan *agentapi.Report
	listening atomic.Bool
	ran       atomic.Bool
}

// RESTConfig is the agent's API identity: --kubeconfig when given (it wins
// over in-cluster detection), else the pod's service account.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("agent API identity (--kubeconfig %q): %w", kubeconfig, err)
	}
	rc.UserAgent = UserAgent
	return rc, nil
}

// New builds the agent and opens its socket, so the plug-in can connect
// as soon as New returns (it is answered once Run runs).
func New(cfg Config, rc *rest.Config) (*Agent, error) {
	core, err := typedcorev1.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("agent API client: %w", err)
	}
	return NewFromParts(cfg, podcache.NodeListWatch(core.RESTClient(), cfg.NodeName), core)
}

// NewFromParts is New with the pod source and the Events client given
// (events nil: no Events), for embedders and the benchmark.
func NewFromParts(cfg Config, lw cache.ListerWatcher, events typedcorev1.EventsGetter) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Socket == "" {
		return nil, errors.New("agent: no socket configured")
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	var reg prometheus.Registerer = cfg.Registry
	if cfg.Registry == nil {
		reg = prometheus.NewRegistry()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("part", "agent"), m: newMetrics(reg), reg: reg,
		reports: make(chan *agentapi.Report, 1024)}
	var err error
	a.cache, err = podcache.New(lw, podcache.Hooks{
		WatchError: func(err error) {
			a.m.watchErrors.Inc()
			a.log.Warn("pod watch broken; relisting", "error", err)
		},
		Changed: func(n int) { a.m.cachePods.Set(float64(n)) },
	})
	if err != nil {
		return nil, err
	}
	a.srv = &server{cfg: &a.cfg, cache: a.cache, reports: a.reports, m: a.m, log: a.log, sem: make(chan struct{}, maxConns)}
	a.rep = &reporter{cfg: &a.cfg, out: cfg.Out, m: a.m, log: a.log, uidOf: a.uidOf}
	if events != nil {
		a.events = newEventPoster(events, &a.cfg, a.m)
		a.rep.events = a.events
	}
	if a.ln, err = listen(cfg.Socket, a.log); err != nil {
		a.stopEvents()
		return nil, err
	}
	a.listening.Store(true)
	return a, nil
}

func (a *Agent) stopEvents() {
	if a.events != nil {
		a.events.stop()
	}
}

func (a *Agent) uidOf(namespace, name string) string {
	if e, ok := a.cache.Peek(namespace, name); ok {
		return string(e.UID)
	}
	return ""
}

// Ready is nil once the pod cache has synced and the socket listens
// (install-cni's /readyz).
func (a *Agent) Ready() error {
	switch {
	case !a.listening.Load():
		return errors.New("agent socket not listening")
	case !a.cache.Synced():
		return errors.New("agent pod cache not synced")
	}
	return nil
}

// Run serves until ctx is done, then closes the socket (removing the file
// if it is still its own), finishes the requests in flight and writes the
// reports already queued.
func (a *Agent) Run(ctx context.Context) error {
	if !a.ran.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.cache.Run(ctx) }()
	go func() { defer wg.Done(); a.rep.run(a.reports) }()
	served := make(chan struct{})
	go func() { defer close(served); a.srv.serve(ctx, a.ln) }()
	go a.watchSync(ctx)
	if a.repair != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.repair.Run(ctx) }()
	}
	a.log.Info("agent listening", "socket", a.cfg.Socket, "node", a.cfg.NodeName, "podWait", a.cfg.PodWait.String())
	<-ctx.Done()
	a.listening.Store(false)
	_ = a.ln.Close()
	<-served        // no connection is accepted after this ...
	a.srv.wg.Wait() // ... and none is still being answered
	close(a.reports)
	wg.Wait()
	a.stopEvents()
	return nil
}

func (a *Agent) watchSync(ctx context.Context) {
	if !waitFor(ctx, a.cache.Synced) {
		return
	}
	a.m.cacheSynced.Set(1)
	a.log.Info("pod cache synced", "node", a.cfg.NodeName)
	if a.cfg.OnReady != nil {
		a.cfg.OnReady()
	}
}
