package repair

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
)

// delete removes exactly the pod instance flagged: the request carries its
// UID as precondition. Controller-owned pods, a Job's Never pod and bare
// pods alike.
func TestDeleteWithUIDPrecondition(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mut    func(*corev1.Pod)
		detail string
	}{
		{"ReplicaSet pod", func(*corev1.Pod) {}, "recreates it"},
		{"Job pod, restartPolicy Never", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "Job", Name: "j"}}
			p.Spec.RestartPolicy = corev1.RestartPolicyNever
		}, "(Job)"},
		{"bare pod", func(p *corev1.Pod) { p.OwnerReferences = nil }, "nothing recreates it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, ModeDelete)
			r.run()
			p := unmeshedPod("web-1", "uid-1", tc.mut)
			r.addPod(p)
			r.eventually("deleted", func() bool { return r.repairs(resultSuccess) == 1 })
			var del *k8stesting.DeleteActionImpl
			for _, a := range r.client.Actions() {
				if d, ok := a.(k8stesting.DeleteActionImpl); ok {
					del = &d
				}
			}
			if del == nil || del.Name != "web-1" || del.Namespace != "default" {
				t.Fatalf("no delete of default/web-1: %v", r.apiActions())
			}
			if pc := del.DeleteOptions.Preconditions; pc == nil || pc.UID == nil || *pc.UID != "uid-1" {
				t.Fatalf("delete without the pod's UID precondition: %+v", del.DeleteOptions)
			}
			if _, err := r.client.CoreV1().Pods("default").Get(context.Background(), "web-1", metav1.GetOptions{}); err == nil {
				t.Fatal("pod still in the API")
			}
			ev := r.events()
			if reasons(ev) != "Warning Unmeshed,Normal UnmeshedPodDeleted" || !strings.Contains(ev[1], tc.detail) {
				t.Fatalf("events %q", ev)
			}
			if !strings.Contains(ev[0], "no ADD record") || !strings.Contains(ev[0], "repair mode delete") {
				t.Fatalf("the Unmeshed Event does not say why and what: %q", ev[0])
			}
			if r.gauge() != 1 {
				t.Fatalf("gauge %v", r.gauge())
			}
			// The deletion reaches the cache: the pod no longer counts.
			now := metav1.Now()
			r.cache.set(t, unmeshedPod("web-1", "uid-1", tc.mut, func(p *corev1.Pod) { p.DeletionTimestamp = &now }))
			r.eventually("gauge back to 0", func() bool { return r.gauge() == 0 })
			if !strings.Contains(r.log(), "sinceActiveMs") {
				t.Fatal("no handled log line with the time since active")
			}
		})
	}
}

// A pod replaced by another of the same name between the cache and the
// delete: the precondition fails, nothing else is deleted, it is skipped.
func TestDeleteOfReplacedPodSkipped(t *testing.T) {
	r := newRig(t, ModeDelete)
	r.client.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrConflict()
	})
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	r.eventually("skipped", func() bool { return r.repairs(resultSkipped) == 1 })
	if r.repairs(resultFailed) != 0 || reasons(r.events()) != "Warning Unmeshed" {
		t.Fatal("a replaced pod counted as a failure or got an action Event")
	}
}

// label adds exactly mesh-cni.io/unmeshed=true, tests the UID, changes
// nothing else.
func TestLabelPatch(t *testing.T) {
	r := newRig(t, ModeLabel)
	r.run()
	p := unmeshedPod("web-1", "uid-1")
	r.addPod(p)
	r.eventually("labelled", func() bool { return r.repairs(resultSuccess) == 1 })
	var patch k8stesting.PatchActionImpl
	n := 0
	for _, a := range r.client.Actions() {
		if pa, ok := a.(k8stesting.PatchActionImpl); ok {
			patch, n = pa, n+1
		}
	}
	if n != 1 || patch.PatchType != "application/json-patch+json" {
		t.Fatalf("%d patches, type %q", n, patch.PatchType)
	}
	var ops []map[string]any
	if err := json.Unmarshal(patch.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	want := `[{"op":"test","path":"/metadata/uid","value":"uid-1"},{"op":"add","path":"/metadata/labels/mesh-cni.io~1unmeshed","value":"true"}]`
	if got, _ := json.Marshal(ops); string(got) != want {
		t.Fatalf("patch %s\nwant  %s", got, want)
	}
	got, err := r.client.CoreV1().Pods("default").Get(context.Background(), "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[LabelUnmeshed] != "true" || got.Labels["app"] != "web" || len(got.Labels) != 2 || got.UID != "uid-1" {
		t.Fatalf("labels %v", got.Labels)
	}
	if reasons(r.events()) != "Warning Unmeshed,Normal UnmeshedPodLabeled" {
		t.Fatal("events")
	}
}

// The patch of a pod without labels creates the map; a patch whose UID
// test fails (another pod of the same name) changes nothing.
func TestLabelPatchShapes(t *testing.T) {
	b, _ := labelPatch("u", false)
	if string(b) != `[{"op":"test","path":"/metadata/uid","value":"u"},{"op":"add","path":"/metadata/labels","value":{"mesh-cni.io/unmeshed":"true"}}]` {
		t.Fatalf("%s", b)
	}
	r := newRig(t, ModeLabel)
	api := unmeshedPod("web-1", "uid-2") // the API holds a newer pod of the same name
	if _, err := r.client.CoreV1().Pods("default").Create(context.Background(), api, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.run()
	r.cache.set(t, unmeshedPod("web-1", "uid-1"))
	r.eventually("a failure", func() bool { return r.repairs(resultFailed) >= 1 })
	got, _ := r.client.CoreV1().Pods("default").Get(context.Background(), "web-1", metav1.GetOptions{})
	if _, ok := got.Labels[LabelUnmeshed]; ok {
		t.Fatal("the label landed on another pod instance")
	}
}

// Once per sandbox: more updates of the same sandbox are not flagged or
// acted on again; a new sandbox (the kubelet recreated it) is.
func TestOncePerSandbox(t *testing.T) {
	r := newRig(t, ModeOff)
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	r.eventually("flagged", func() bool { return r.repairs(resultSkipped) == 1 })
	for i := 0; i < 5; i++ {
		r.cache.set(t, unmeshedPod("web-1", "uid-1", func(p *corev1.Pod) { p.ResourceVersion = string(rune('2' + i)) }))
	}
	r.c.Notify()
	r.cache.set(t, unmeshedPod("web-1", "uid-1", func(p *corev1.Pod) {
		p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(time.Hour))
	}))
	r.eventually("the new sandbox flagged", func() bool { return r.repairs(resultSkipped) == 2 })
	time.Sleep(50 * time.Millisecond) // let any extra (wrong) flag land
	if got := reasons(r.events()); got != "Warning Unmeshed,Warning Unmeshed" {
		t.Fatalf("events %s", got)
	}
	if r.gauge() != 1 {
		t.Fatalf("gauge %v: one pod", r.gauge())
	}
}

// off flags (Event, gauge, log) and touches nothing in the API.
func TestOffOnlyFlags(t *testing.T) {
	r := newRig(t, ModeOff)
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	r.addPod(unmeshedPod("web-2", "uid-2"))
	r.eventually("flagged", func() bool { return r.gauge() == 2 && r.repairs(resultSkipped) == 2 })
	if a := r.apiActions(); len(a) != 0 {
		t.Fatalf("off mode acted: %v", a)
	}
	ev := r.events()
	if reasons(ev) != "Warning Unmeshed,Warning Unmeshed" || !strings.Contains(ev[0], "repair mode off") {
		t.Fatalf("events %q", ev)
	}
	if !strings.Contains(r.log(), `msg="unmeshed pod"`) {
		t.Fatal("no log line")
	}
}

// Failures back off (exponentially, capped) and each is an Event and a
// metric; the action succeeds once the API lets it.
func TestFailureBacksOff(t *testing.T) {
	r := newRig(t, ModeDelete)
	var calls atomic.Int32
	var times []time.Time
	r.client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		times = append(times, time.Now())
		if calls.Add(1) <= 4 {
			return true, nil, errors.New("admission webhook said no")
		}
		return false, nil, nil
	})
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	r.eventually("deleted after 4 failures", func() bool { return r.repairs(resultSuccess) == 1 })
	if r.repairs(resultFailed) != 4 || calls.Load() != 5 {
		t.Fatalf("failed %v, calls %d", r.repairs(resultFailed), calls.Load())
	}
	got := reasons(r.events())
	if got != "Warning Unmeshed,Warning RepairFailed,Warning RepairFailed,Warning RepairFailed,Warning RepairFailed,Normal UnmeshedPodDeleted" {
		t.Fatalf("events %s", got)
	}
	// 5ms base doubling: 5, 10, 20, 40 (the cap) between the attempts.
	for i, min := range []time.Duration{5, 10, 20, 40} {
		if gap := times[i+1].Sub(times[i]); gap < min*time.Millisecond {
			t.Fatalf("retry %d after %v, backoff wants >= %v", i+1, gap, min*time.Millisecond)
		}
	}
}

// A long backoff holds: a pod that keeps failing is not hammered by its
// own updates.
func TestBackoffHoldsAcrossUpdates(t *testing.T) {
	r := newRig(t, ModeDelete, func(c *Config) { c.BackoffBase, c.BackoffMax = time.Hour, time.Hour })
	var calls atomic.Int32
	r.client.PrependReactor("delete", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		return true, nil, errors.New("forbidden")
	})
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	r.eventually("one failure", func() bool { return r.repairs(resultFailed) == 1 })
	for i := 0; i < 3; i++ {
		r.cache.set(t, unmeshedPod("web-1", "uid-1", func(p *corev1.Pod) { p.ResourceVersion = string(rune('5' + i)) }))
	}
	time.Sleep(100 * time.Millisecond)
	if calls.Load() != 1 {
		t.Fatalf("updates retried during the backoff: %d calls", calls.Load())
	}
}

// Not installed (or the cache not synced): nothing is flagged or done; once
// installed and notified, it is.
func TestNotInstalledNoAction(t *testing.T) {
	r := newRig(t, ModeDelete)
	r.installed = false
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	time.Sleep(100 * time.Millisecond)
	if a := r.apiActions(); len(a) != 0 || len(r.events()) != 0 || r.gauge() != 0 {
		t.Fatalf("acted while not installed: %v", a)
	}
	r.mu.Lock()
	r.installed = true
	r.mu.Unlock()
	r.c.Notify()
	r.eventually("deleted once installed", func() bool { return r.repairs(resultSuccess) == 1 })
}

func TestNotSyncedNoAction(t *testing.T) {
	r := newRig(t, ModeDelete)
	r.cache.synced = false
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	time.Sleep(100 * time.Millisecond)
	if a := r.apiActions(); len(a) != 0 || len(r.events()) != 0 {
		t.Fatalf("acted before the cache synced: %v", a)
	}
	r.cache.mu.Lock()
	r.cache.synced = true
	r.cache.mu.Unlock()
	r.eventually("deleted once synced", func() bool { return r.repairs(resultSuccess) == 1 })
}

// A meshed pod (redirected record) is never flagged; a record that appears
// later (in-place repair, an ADD the watch beat) clears the flag through
// the records dir watch.
func TestRecordsDecide(t *testing.T) {
	r := newRig(t, ModeOff)
	meshed := unmeshedPod("web-0", "uid-0")
	r.record(meshed, "redirected")
	r.run()
	r.addPod(meshed)
	r.addPod(unmeshedPod("web-1", "uid-1"))
	r.eventually("web-1 flagged", func() bool { return r.gauge() == 1 && r.repairs(resultSkipped) == 1 })
	r.record(unmeshedPod("web-1", "uid-1"), "redirected")
	r.eventually("flag cleared by the record", func() bool { return r.gauge() == 0 })
	if ev := r.events(); len(ev) != 1 || !strings.Contains(ev[0], "web-1") && !strings.Contains(ev[0], "Unmeshed") {
		t.Fatalf("events %q", ev)
	}
}

// Stale records of pods gone are pruned once old; a young one (an ADD the
// watch has not delivered yet) and corrupt files are kept, the corrupt
// one reported.
func TestPruneStaleRecords(t *testing.T) {
	r := newRig(t, ModeOff, func(c *Config) { c.RecordGrace = time.Hour })
	old := unmeshedPod("gone", "uid-gone")
	r.record(old, "redirected")
	young := unmeshedPod("young", "uid-young")
	r.record(young, "redirected")
	// age the first one past the grace
	oldPath := r.dir + "/c-uid-gone.json"
	b, _ := readFile(oldPath)
	b = []byte(strings.Replace(string(b), `"time":"`+time.Now().UTC().Format("2006"), `"time":"2001`, 1))
	if err := writeFile(oldPath, b); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(r.dir+"/junk.json", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	r.run()
	r.eventually("old record pruned", func() bool { _, err := readFile(oldPath); return err != nil })
	if _, err := readFile(r.dir + "/c-uid-young.json"); err != nil {
		t.Fatal("young record pruned")
	}
	if _, err := readFile(r.dir + "/junk.json"); err != nil {
		t.Fatal("corrupt record removed")
	}
	r.eventually("corrupt record reported", func() bool { return strings.Contains(r.log(), "unreadable sandbox record") })
}

// repair mode calls InPlace with the pod, its IPs and the installed config.
func TestRepairModeCallsInPlace(t *testing.T) {
	ip := &fakeInPlace{}
	r := newRig(t, ModeRepair, func(c *Config) { c.InPlace = ip })
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	r.eventually("repaired", func() bool { return r.repairs(resultSuccess) == 1 })
	if ip.pod.Metadata.UID != "uid-1" || ip.pod.Metadata.Name != "web-1" || strings.Join(ip.ips, ",") != "10.0.0.5" || ip.cfg.SandboxDir != r.dir {
		t.Fatalf("InPlace got %+v %v %+v", ip.pod.Metadata, ip.ips, ip.cfg)
	}
	if reasons(r.events()) != "Warning Unmeshed,Normal UnmeshedPodRepaired" {
		t.Fatal("events")
	}
}

func TestModeNeedsItsParts(t *testing.T) {
	if _, err := New(Config{Mode: "heal"}); err == nil || !strings.Contains(err.Error(), `"heal"`) {
		t.Fatalf("bad mode: %v", err)
	}
	r := newRig(t, ModeOff)
	cfg := r.c.cfg
	cfg.Mode, cfg.InPlace = ModeRepair, nil
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "in-place") {
		t.Fatalf("repair without InPlace: %v", err)
	}
}

type fakeInPlace struct {
	pod pod.Pod
	ips []string
	cfg *config.Config
}

func (f *fakeInPlace) RepairInPlace(_ context.Context, p *pod.Pod, ips []string, cfg *config.Config) (string, error) {
	f.pod, f.ips, f.cfg = *p, ips, cfg
	return "rules verified", nil
}

// The replacement of a pod deleted as unmeshed is unmeshed too (the
// plug-in records nothing): it is not deleted again within the window, so
// a broken records dir cannot become a restart loop; it stays flagged.
func TestDeleteLoopGuard(t *testing.T) {
	r := newRig(t, ModeDelete, func(c *Config) { c.BackoffBase, c.BackoffMax = time.Hour, time.Hour })
	r.run()
	r.addPod(unmeshedPod("web-1", "uid-1"))
	r.eventually("first deleted", func() bool { return r.repairs(resultSuccess) == 1 })
	r.addPod(unmeshedPod("web-2", "uid-2"))
	r.eventually("replacement refused", func() bool { return r.repairs(resultFailed) == 1 })
	if _, err := r.client.CoreV1().Pods("default").Get(context.Background(), "web-2", metav1.GetOptions{}); err != nil {
		t.Fatalf("the replacement was deleted: %v", err)
	}
	ev := r.events()
	if !strings.Contains(ev[len(ev)-1], "RepairFailed") || !strings.Contains(ev[len(ev)-1], "would loop") {
		t.Fatalf("events %q", ev)
	}
	// Another controller's pod is not held back.
	r.addPod(unmeshedPod("api-1", "uid-3", func(p *corev1.Pod) { p.OwnerReferences[0].Name = "api" }))
	r.eventually("other controller's pod deleted", func() bool { return r.repairs(resultSuccess) == 2 })
}
