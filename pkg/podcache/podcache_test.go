package podcache

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fcache "k8s.io/client-go/tools/cache/testing"
)

func apiPod(name, uid string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(uid), Annotations: annotations,
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "app", Image: "app:1"}, {Name: "istio-proxy"}}},
	}
}

func started(t *testing.T, src *fcache.FakeControllerSource) *Cache {
	t.Helper()
	c, err := New(src, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for !c.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("cache never synced")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

// The cache keeps pkg/pod's fields and the identity, nothing else.
func TestReduceKeepsOnlyWhatIsRead(t *testing.T) {
	e, err := Reduce(apiPod("p", "u1", map[string]string{"a": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if e.UID != "u1" || e.Pod.Metadata.Name != "p" || e.Pod.Metadata.Annotations["a"] != "b" || len(e.Pod.Spec.Containers) != 2 {
		t.Fatalf("%+v", e)
	}
	if e.ManagedFields != nil || e.Pod.Spec.Containers[0].Name != "app" {
		t.Fatalf("kept more than needed: %+v", e.ObjectMeta)
	}
}

// A pod the watch delivers while the lookup waits is returned.
func TestLookupWaitsForTheWatch(t *testing.T) {
	src := fcache.NewFakeControllerSource()
	c := started(t, src)
	go func() {
		time.Sleep(50 * time.Millisecond)
		src.Add(apiPod("late", "u1", nil))
	}()
	e, ok := c.Lookup(context.Background(), "ns", "late", "u1", 5*time.Second)
	if !ok || e.UID != "u1" {
		t.Fatalf("late pod not found: %v", e)
	}
	if _, ok := c.Lookup(context.Background(), "ns", "never", "", 30*time.Millisecond); ok {
		t.Fatal("found a pod that does not exist")
	}
}

// A cached pod with another UID is not the pod: the lookup waits for the
// new incarnation (deleted and recreated under the same name) and never
// returns the old one.
func TestLookupUIDOfRecreatedPod(t *testing.T) {
	src := fcache.NewFakeControllerSource()
	old := apiPod("p", "old", map[string]string{"v": "1"})
	src.Add(old)
	c := started(t, src)
	if _, ok := c.Lookup(context.Background(), "ns", "p", "new", 50*time.Millisecond); ok {
		t.Fatal("old incarnation returned for the new UID")
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		src.Delete(old)
		src.Add(apiPod("p", "new", map[string]string{"v": "2"}))
	}()
	e, ok := c.Lookup(context.Background(), "ns", "p", "new", 5*time.Second)
	if !ok || e.Pod.Metadata.Annotations["v"] != "2" {
		t.Fatalf("new incarnation not served: %+v", e)
	}
	if _, ok := c.Lookup(context.Background(), "ns", "p", "old", 0); ok {
		t.Fatal("deleted incarnation still served")
	}
}

func TestNotSyncedBeforeRun(t *testing.T) {
	c, err := New(fcache.NewFakeControllerSource(), Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Synced() {
		t.Fatal("synced without a list")
	}
}

// The repair controller's fields are kept beside pkg/pod's.
func TestReduceKeepsStatus(t *testing.T) {
	p := apiPod("p", "u1", nil)
	now := metav1.Now()
	p.DeletionTimestamp = &now
	p.OwnerReferences = []metav1.OwnerReference{{Kind: "Job", Name: "j"}}
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	p.Spec.HostNetwork = true
	ready := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.0.1", PodIPs: []corev1.PodIP{{IP: "10.1.0.1"}, {IP: "fd00::1"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse},
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: ready}}}
	e, err := Reduce(p)
	if err != nil {
		t.Fatal(err)
	}
	s := e.Status
	if s.Phase != corev1.PodRunning || len(s.PodIPs) != 2 || s.PodIPs[1] != "fd00::1" || !s.HostNetwork || !s.Deleting ||
		len(s.OwnerKinds) != 1 || s.OwnerKinds[0] != "Job" || s.RestartPolicy != corev1.RestartPolicyNever || !s.NetworkReadyAt.Equal(ready.Time) {
		t.Fatalf("%+v", s)
	}
}

// Subscribe sees adds, updates and deletes as the watch delivers them.
func TestSubscribe(t *testing.T) {
	src := fcache.NewFakeControllerSource()
	src.Add(apiPod("a", "u1", nil))
	c, err := New(src, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	evs := make(chan Event, 10)
	if err := c.Subscribe(func(e Event) { evs <- e }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	want := func(typ EventType, name string) {
		t.Helper()
		select {
		case e := <-evs:
			if e.Type != typ || e.Entry.Name != name {
				t.Fatalf("got %s %s, want %s %s", e.Type, e.Entry.Name, typ, name)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s %s", typ, name)
		}
	}
	want(Added, "a")
	p := apiPod("a", "u1", map[string]string{"x": "y"})
	src.Modify(p)
	want(Updated, "a")
	src.Delete(p)
	want(Deleted, "a")
	if len(c.List()) != 0 {
		t.Fatal("List after delete")
	}
}
