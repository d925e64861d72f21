package repair

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/unmeshed"
)

// verifyingInPlace is an InPlace that can also read the netns: ok says
// whether the rules are there; repairs and verifies count the calls.
type verifyingInPlace struct {
	fakeInPlace
	mu                sync.Mutex
	ok                bool
	repairs, verifies int
}

func (f *verifyingInPlace) RepairInPlace(ctx context.Context, p *pod.Pod, ips []string, cfg *config.Config) (string, error) {
	f.mu.Lock()
	f.repairs++
	f.mu.Unlock()
	return f.fakeInPlace.RepairInPlace(ctx, p, ips, cfg)
}

func (f *verifyingInPlace) Verify(context.Context, *pod.Pod, []string, *config.Config) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verifies++
	return f.ok, "ISTIO_INBOUND missing", nil
}

func (f *verifyingInPlace) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.repairs, f.verifies
}

// In repair mode a pod whose ADD record says redirected but whose netns
// lacks the rules is unmeshed and repaired; its netns is read once per
// sandbox, not at every update.
func TestRepairModeChecksTheKernel(t *testing.T) {
	ip := &verifyingInPlace{}
	r := newRig(t, ModeRepair, func(c *Config) { c.InPlace = ip })
	p := unmeshedPod("web-1", "uid-1")
	r.record(p, "redirected")
	r.run()
	r.addPod(p)
	r.eventually("repaired", func() bool { return r.repairs(resultSuccess) == 1 })
	ev := r.events()
	if reasons(ev) != "Warning Unmeshed,Normal UnmeshedPodRepaired" || !strings.Contains(strings.Join(ev, "\n"), "ISTIO_INBOUND missing") {
		t.Fatalf("events: %q", ev)
	}
	p.Labels = map[string]string{"touched": "1"} // an update of the same sandbox
	r.cache.set(t, p)
	cfg, active := r.c.active()
	if !active {
		t.Fatal("controller not active")
	}
	r.c.reconcile(context.Background(), "default/web-1", cfg) // as the update's queue item would
	if rep, v := ip.counts(); rep != 1 || v != 1 {
		t.Fatalf("repairs %d, verifies %d: want 1, 1 (once per sandbox)", rep, v)
	}
}

// A netns that holds the rules leaves the pod alone.
func TestKernelCheckAgrees(t *testing.T) {
	ip := &verifyingInPlace{ok: true}
	r := newRig(t, ModeRepair, func(c *Config) { c.InPlace = ip })
	p := unmeshedPod("web-1", "uid-1")
	r.record(p, "redirected")
	r.run()
	r.addPod(p)
	r.eventually("looked at", func() bool { _, v := ip.counts(); return v == 1 })
	if rep, _ := ip.counts(); rep != 0 || len(r.events()) != 0 || r.gauge() != 0 {
		t.Fatalf("a pod whose netns holds the rules was acted on: %d repairs, events %q", rep, r.events())
	}
}

// Other modes have no capability to read a netns: the record's word holds.
func TestKernelCheckOnlyInRepairMode(t *testing.T) {
	ip := &verifyingInPlace{}
	r := newRig(t, ModeDelete, func(c *Config) { c.InPlace = ip })
	p := unmeshedPod("web-1", "uid-1")
	r.addPod(p)
	e, ok := r.cache.Peek("default", "web-1")
	if !ok {
		t.Fatal("pod not cached")
	}
	in := unmeshed.Verdict{Recorded: true, Sandbox: "s", Reason: "redirected by the plug-in's ADD"}
	if out := r.c.checkKernel(context.Background(), "default/web-1", e, &config.Config{}, in); out != in {
		t.Fatalf("verdict changed to %+v", out)
	}
	if _, v := ip.counts(); v != 0 {
		t.Fatalf("netns read %d times in mode delete", v)
	}
}
