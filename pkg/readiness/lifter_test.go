package readiness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshcni/mesh-cni/pkg/installer"
)

const node = "node-a"

// fakeProber is STATUS with a settable result; it counts its runs.
type fakeProber struct {
	mu    sync.Mutex
	err   error
	runs  int
	paths []string
}

func (p *fakeProber) Status(_ context.Context, path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs++
	p.paths = append(p.paths, path)
	return p.err
}

func (p *fakeProber) set(err error) { p.mu.Lock(); p.err = err; p.mu.Unlock() }
func (p *fakeProber) count() int    { p.mu.Lock(); defer p.mu.Unlock(); return p.runs }

// fakeAgent is the agent's readiness.
type fakeAgent struct {
	mu  sync.Mutex
	err error
}

func (a *fakeAgent) ready() error  { a.mu.Lock(); defer a.mu.Unlock(); return a.err }
func (a *fakeAgent) set(err error) { a.mu.Lock(); a.err = err; a.mu.Unlock() }

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// harness is a Lifter against a fake clientset holding one node.
type harness struct {
	cs     *fake.Clientset
	l      *Lifter
	prober *fakeProber
	agent  *fakeAgent
	reg    *prometheus.Registry
	logs   *lockedBuf
	cancel context.CancelFunc
	done   chan struct{}
}

func newHarness(t *testing.T, taints ...corev1.Taint) *harness {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, UID: "uid-a", Labels: map[string]string{"l": "1"}},
		Spec: corev1.NodeSpec{Taints: taints, PodCIDR: "10.0.0.0/24"}}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{ours}}}
	h := &harness{cs: fake.NewClientset(n, other), prober: &fakeProber{}, agent: &fakeAgent{},
		reg: prometheus.NewRegistry(), logs: &lockedBuf{}, done: make(chan struct{})}
	var err error
	h.l, err = New(Config{NodeName: node, Nodes: h.cs.CoreV1().Nodes(), Events: h.cs.CoreV1(), Prober: h.prober,
		Agent: h.agent.ready, Logger: slog.New(slog.NewJSONHandler(h.logs, nil)), Registry: h.reg,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, NotReadyLogEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { defer close(h.done); h.l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
		if t.Failed() {
			t.Logf("log:\n%s", h.logs)
		}
	})
	return h
}

func installed() installer.State {
	return installer.State{Installed: true, ConflistPath: "/host/etc/cni/net.d/10-calico.conflist"}
}

func (h *harness) node(t *testing.T, name string) *corev1.Node {
	t.Helper()
	n, err := h.cs.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, "", name)
	if err != nil {
		t.Fatal(err)
	}
	return n.(*corev1.Node)
}

// patches are the node patches sent so far, by node name.
func (h *harness) patches() []k8stesting.PatchAction {
	var out []k8stesting.PatchAction
	for _, a := range h.cs.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok && a.GetResource().Resource == "nodes" {
			out = append(out, p)
		}
	}
	return out
}

func (h *harness) gauge() float64   { return testutil.ToFloat64(h.l.m.ready) }
func (h *harness) removed() float64 { return testutil.ToFloat64(h.l.m.removed) }

func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle lets Run finish what the last event caused.
func (h *harness) settle() { time.Sleep(50 * time.Millisecond) }

// onlyRemovals fails when a patch holds anything but the guard and
// removals of our taint.
func onlyRemovals(t *testing.T, ps []k8stesting.PatchAction) {
	t.Helper()
	for _, p := range ps {
		var ops []map[string]any
		if err := json.Unmarshal(p.GetPatch(), &ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			if op["op"] != "test" && op["op"] != "remove" {
				t.Errorf("patch %s holds op %v", p.GetPatch(), op["op"])
			}
		}
		if p.GetName() != node {
			t.Errorf("patched node %s", p.GetName())
		}
	}
}

func TestLiftsWhenReady(t *testing.T) {
	h := newHarness(t, other, ours, unreach)
	h.l.OnState(installed())
	wait(t, "taint removed", func() bool { return !HasTaint(h.node(t, node).Spec.Taints) })
	got := h.node(t, node)
	want, _ := json.Marshal([]corev1.Taint{other, unreach})
	if b, _ := json.Marshal(got.Spec.Taints); string(b) != string(want) {
		t.Errorf("taints after the lift: %s, want %s (others kept, in order)", b, want)
	}
	if got.Labels["l"] != "1" || got.Spec.PodCIDR != "10.0.0.0/24" {
		t.Errorf("node changed beyond the taint: %+v", got)
	}
	if !HasTaint(h.node(t, "node-b").Spec.Taints) {
		t.Error("another node's taint was touched")
	}
	wait(t, "Event", func() bool {
		evs, _ := h.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		return len(evs.Items) == 1 && evs.Items[0].Reason == ReasonTaintRemoved && evs.Items[0].InvolvedObject.Kind == "Node" &&
			evs.Items[0].InvolvedObject.Name == node && evs.Items[0].Type == corev1.EventTypeNormal
	})
	if h.removed() != 1 || h.gauge() != 1 {
		t.Errorf("removed_total %v, node_ready %v", h.removed(), h.gauge())
	}
	if h.prober.paths[0] != installed().ConflistPath {
		t.Errorf("STATUS ran on %q", h.prober.paths[0])
	}
	if !strings.Contains(h.logs.String(), "readiness taint removed") {
		t.Error("no log line for the lift")
	}
	onlyRemovals(t, h.patches())
}

// TestNoTaintNoPatch: a node registered without the taint is left alone,
// and the gauge still says the node is ready.
func TestNoTaintNoPatch(t *testing.T) {
	h := newHarness(t, other)
	h.l.OnState(installed())
	wait(t, "node_ready 1", func() bool { return h.gauge() == 1 })
	h.l.OnState(installed())
	h.settle()
	if ps := h.patches(); len(ps) != 0 {
		t.Errorf("patched a node without the taint: %s", ps[0].GetPatch())
	}
	if h.removed() != 0 {
		t.Error("counted a removal")
	}
}

// TestNotReadyNoPatch: each missing input keeps the taint, says why, and
// sets the gauge to 0; STATUS runs only once the rest holds, and a failing
// STATUS is looked at again without an event.
func TestNotReadyNoPatch(t *testing.T) {
	h := newHarness(t, ours)
	h.agent.set(errors.New("agent pod cache not synced"))
	h.l.OnState(installer.State{Reason: "config entry: no primary CNI configuration in /x yet"})
	h.settle()
	h.l.OnState(installed())
	h.settle()
	if h.prober.count() != 0 {
		t.Errorf("STATUS ran %d times before the agent was ready", h.prober.count())
	}
	h.prober.set(errors.New("no iptables-restore (legacy or nft) on PATH"))
	h.agent.set(nil)
	h.l.Wake()
	wait(t, "STATUS retried with backoff, no event needed", func() bool { return h.prober.count() >= 4 })
	if ps := h.patches(); len(ps) != 0 || !HasTaint(h.node(t, node).Spec.Taints) || h.gauge() != 0 {
		t.Fatalf("not ready, yet patches %d, taint there %v, gauge %v", len(ps), HasTaint(h.node(t, node).Spec.Taints), h.gauge())
	}
	for _, why := range []string{"no primary CNI configuration", "agent pod cache not synced", "no iptables-restore"} {
		if !strings.Contains(h.logs.String(), why) {
			t.Errorf("no not-ready log line saying %q", why)
		}
	}
	h.prober.set(nil)
	wait(t, "lifted once STATUS passes", func() bool { return !HasTaint(h.node(t, node).Spec.Taints) })
}

// TestConcurrentChangeRetries: another writer changes the taints between
// the agent's read and its patch. The patch's test fails (nothing
// removed, the writer's taint kept), the agent reads again and removes
// only its taint.
func TestConcurrentChangeRetries(t *testing.T) {
	h := newHarness(t, ours)
	var raced atomic.Bool
	h.cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if raced.CompareAndSwap(false, true) {
			n := h.node(t, node).DeepCopy()
			n.Spec.Taints = append(n.Spec.Taints, other)
			if err := h.cs.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, n, ""); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil // the tracker applies the patch (and its test)
	})
	h.l.OnState(installed())
	wait(t, "taint removed", func() bool { return !HasTaint(h.node(t, node).Spec.Taints) })
	got := h.node(t, node).Spec.Taints
	if len(got) != 1 || got[0].Key != other.Key {
		t.Errorf("taints %v: the concurrent writer's taint must stay", got)
	}
	if n := len(h.patches()); n != 2 {
		t.Errorf("%d patches, want 2 (refused, then the one after reading again)", n)
	}
	if h.removed() != 1 {
		t.Errorf("removed_total %v", h.removed())
	}
	onlyRemovals(t, h.patches())
}

// TestAPIErrorBacksOff: the API server refuses (e.g. RBAC or the VAP):
// the agent retries with backoff, never gives up, and succeeds once allowed.
func TestAPIErrorBacksOff(t *testing.T) {
	h := newHarness(t, ours)
	var refusals atomic.Int32
	h.cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if refusals.Add(1) <= 3 {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, node, fmt.Errorf("denied"))
		}
		return false, nil, nil
	})
	h.l.OnState(installed())
	wait(t, "taint removed after the refusals", func() bool { return !HasTaint(h.node(t, node).Spec.Taints) })
	if refusals.Load() != 4 || !strings.Contains(h.logs.String(), "cannot remove the readiness taint; retrying") {
		t.Errorf("%d patch attempts, log:\n%s", refusals.Load(), h.logs)
	}
}

// TestNeverAddsBack: after the lift the node goes not ready (uninstall,
// the agent stops): nothing is patched, the taint is not put back, even
// when it comes back ready with someone else's taint.
func TestNeverAddsBack(t *testing.T) {
	h := newHarness(t, ours)
	h.l.OnState(installed())
	wait(t, "lifted", func() bool { return !HasTaint(h.node(t, node).Spec.Taints) })
	before := len(h.patches())
	h.l.OnState(installer.State{Reason: "shutting down"})
	wait(t, "node_ready 0", func() bool { return h.gauge() == 0 })
	h.l.OnState(installed())
	wait(t, "node_ready 1", func() bool { return h.gauge() == 1 })
	h.settle()
	if after := len(h.patches()); after != before {
		t.Errorf("%d more patches after the lift", after-before)
	}
	if HasTaint(h.node(t, node).Spec.Taints) {
		t.Error("the taint came back")
	}
	onlyRemovals(t, h.patches())
}

// TestOnStateNeverBlocks: the installer's loop calls OnState every pass;
// a burst while a step runs must not wait for it.
func TestOnStateNeverBlocks(t *testing.T) {
	h := newHarness(t, ours)
	h.prober.mu.Lock() // STATUS hangs
	h.l.OnState(installed())
	done := make(chan struct{})
	go func() {
		for range 1000 {
			h.l.OnState(installed())
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Error("OnState blocked while a step ran")
	}
	h.prober.mu.Unlock()
	wait(t, "lifted", func() bool { return !HasTaint(h.node(t, node).Spec.Taints) })
}

func TestNewChecks(t *testing.T) {
	cs := fake.NewClientset()
	for name, c := range map[string]Config{
		"no node":   {Nodes: cs.CoreV1().Nodes(), Prober: &fakeProber{}},
		"no client": {NodeName: node, Prober: &fakeProber{}},
		"no prober": {NodeName: node, Nodes: cs.CoreV1().Nodes()},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
