package readiness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/meshcni/mesh-cni/pkg/installer"
)

// Config is what a Lifter needs; the side effects are passed in.
type Config struct {
	NodeName string
	Nodes    typedcorev1.NodeInterface // get + patch of NodeName only
	Events   typedcorev1.EventsGetter  // nil: no Event
	Prober   Prober
	// Agent is the node agent's readiness (agent.Agent.Ready); nil when
	// no agent runs (it then counts as ready). Call Wake when it turns
	// ready.
	Agent func() error

	Logger   *slog.Logger
	Registry prometheus.Registerer

	// Backoff between failed attempts (a patch the API server refused, a
	// failing STATUS): MinBackoff doubling up to MaxBackoff. Zero: 200ms
	// and 30s.
	MinBackoff, MaxBackoff time.Duration
	// NotReadyLogEvery rate-limits the "not ready" log line while the
	// reason stays the same. Zero: 30s.
	NotReadyLogEvery time.Duration
}

// Lifter decides, on every event, whether its node is ready for meshed
// pods and, the first time it is, removes the readiness taint from it.
type Lifter struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	started time.Time
	wake    chan struct{}

	mu    sync.Mutex
	state installer.State
	heard bool // the installer has reported at least once

	// Loop state: touched by Run only.
	done       bool // lifted, or the node had no taint: nothing more to do
	backoff    time.Duration
	lastReason string
	lastLogged time.Time
	wasReady   bool
	attempts   int
}

// New checks cfg and registers the metrics.
func New(cfg Config) (*Lifter, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("readiness: no node name (--node-name, env NODE_NAME)")
	}
	if cfg.Nodes == nil || cfg.Prober == nil {
		return nil, errors.New("readiness: Nodes and Prober are required")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.NotReadyLogEvery <= 0 {
		cfg.NotReadyLogEvery = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Lifter{cfg: cfg, log: cfg.Logger.With("part", "readiness"), m: newMetrics(reg),
		started: time.Now(), wake: make(chan struct{}, 1)}, nil
}

// OnState is installer.Config.OnState: it keeps the newest state and wakes
// Run, never blocking the installer's loop.
func (l *Lifter) OnState(s installer.State) {
	l.mu.Lock()
	l.state, l.heard = s, true
	l.mu.Unlock()
	l.Wake()
}

// Wake makes Run look again (e.g. the agent turned ready). Non-blocking.
func (l *Lifter) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run reacts to wake-ups until ctx ends. A wake-up that arrives while a
// step runs is kept (channel of one), so no change is missed; retries back
// off; there is no periodic resync (the installer reports every pass).
func (l *Lifter) Run(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		if again := l.step(ctx); again {
			retry.Reset(l.nextBackoff())
		} else {
			l.backoff = 0
			retry.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-retry.C:
		}
	}
}

// nextBackoff doubles from MinBackoff to MaxBackoff, with up to 20% jitter
// so that a fleet of nodes does not retry in step.
func (l *Lifter) nextBackoff() time.Duration {
	if l.backoff == 0 {
		l.backoff = l.cfg.MinBackoff
	} else {
		l.backoff = min(2*l.backoff, l.cfg.MaxBackoff)
	}
	return l.backoff + rand.N(l.backoff/5+1)
}

// step decides once and, when ready and not done yet, lifts the taint. It
// returns true when it must be retried without a new event.
func (l *Lifter) step(ctx context.Context) (retry bool) {
	l.mu.Lock()
	st, heard := l.state, l.heard
	l.mu.Unlock()
	in := Inputs{Installed: st.Installed, InstallReason: st.Reason}
	if !heard {
		in.InstallReason = ""
	}
	if l.cfg.Agent != nil {
		in.Agent = l.cfg.Agent()
	}
	if needsStatus(in) {
		in.StatusRun, in.Status = true, l.cfg.Prober.Status(ctx, st.ConflistPath)
	}
	ready, reason := Decide(in)
	l.setReady(ready, reason)
	if !ready {
		// A failing STATUS announces no change: look again. The other
		// inputs come back as events (installer pass, agent ready).
		return in.StatusRun
	}
	if l.done {
		return false
	}
	if err := l.lift(ctx, reason); err != nil {
		l.log.Warn("cannot remove the readiness taint; retrying", "node", l.cfg.NodeName, "taint", TaintKey,
			"attempt", l.attempts, "error", err.Error())
		return true
	}
	l.done = true
	return false
}

func (l *Lifter) setReady(ready bool, reason string) {
	if ready {
		l.m.ready.Set(1)
	} else {
		l.m.ready.Set(0)
	}
	if ready != l.wasReady && ready {
		l.log.Info("node ready for meshed pods", "node", l.cfg.NodeName, "reason", reason)
	}
	l.wasReady = ready
	if ready {
		l.lastReason = ""
		return
	}
	now := time.Now()
	if reason == l.lastReason && now.Sub(l.lastLogged) < l.cfg.NotReadyLogEvery {
		return
	}
	l.lastReason, l.lastLogged = reason, now
	l.log.Info("node not ready for meshed pods; the readiness taint stays if the node has it",
		"node", l.cfg.NodeName, "taint", TaintKey, "reason", reason)
}

// lift reads the node and removes the taint with a patch guarded by the
// taints it read. A node without the taint needs nothing.
func (l *Lifter) lift(ctx context.Context, reason string) error {
	l.attempts++
	node, err := l.cfg.Nodes.Get(ctx, l.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get node %s: %w", l.cfg.NodeName, err)
	}
	patch, err := RemovalPatch(node.Spec.Taints)
	if err != nil {
		return err
	}
	if patch == nil {
		l.log.Info("node has no readiness taint; nothing to remove", "node", l.cfg.NodeName, "taint", TaintKey)
		return nil
	}
	out, err := l.cfg.Nodes.Patch(ctx, l.cfg.NodeName, types.JSONPatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		// A concurrent change of the taints fails the patch's test: the
		// next attempt reads the node again.
		return fmt.Errorf("patch node %s: %w", l.cfg.NodeName, err)
	}
	l.m.removed.Inc()
	l.log.Info("readiness taint removed: the node is ready for meshed pods", "node", l.cfg.NodeName, "taint", TaintKey,
		"reason", reason, "attempts", l.attempts, "sinceStartSeconds", time.Since(l.started).Seconds())
	l.postRemoved(ctx, nodeOrRead(out, node), reason)
	return nil
}

// FieldManager names the agent in the node's managedFields.
const FieldManager = "mesh-cni-agent"

func nodeOrRead(patched, read *corev1.Node) *corev1.Node {
	if patched != nil && patched.Name != "" {
		return patched
	}
	return read
}
