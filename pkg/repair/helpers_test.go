package repair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/meshcni/mesh-cni/pkg/podcache"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// fakeCache is the agent's pod cache as the controller sees it; set and
// remove deliver the events the informer would.
type fakeCache struct {
	mu     sync.Mutex
	synced bool
	pods   map[string]*podcache.Entry
	subs   []func(podcache.Event)
}

func (f *fakeCache) Synced() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.synced }
func (f *fakeCache) List() []*podcache.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*podcache.Entry
	for _, e := range f.pods {
		out = append(out, e)
	}
	return out
}
func (f *fakeCache) Peek(ns, name string) (*podcache.Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.pods[ns+"/"+name]
	return e, ok
}
func (f *fakeCache) Subscribe(fn func(podcache.Event)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs = append(f.subs, fn)
	return nil
}
func (f *fakeCache) set(t *testing.T, p *corev1.Pod) {
	t.Helper()
	e, err := podcache.Reduce(p)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	typ := podcache.Updated
	if _, ok := f.pods[p.Namespace+"/"+p.Name]; !ok {
		typ = podcache.Added
	}
	f.pods[p.Namespace+"/"+p.Name] = e
	subs := f.subs
	f.mu.Unlock()
	for _, s := range subs {
		s(podcache.Event{Type: typ, Entry: e})
	}
}

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// unmeshedPod runs with a sidecar and has its network.
func unmeshedPod(name, uid string, mut ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(uid), ResourceVersion: "1",
			Labels:          map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web", Controller: ptrTrue()}}},
		Spec: corev1.PodSpec{NodeName: "n1", RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{Name: "app", Image: "app:1"}, {Name: "istio-proxy"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue,
				LastTransitionTime: metav1.NewTime(t0)}}},
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

// rig is a controller over a fake cache, a fake clientset and a real
// records dir and conflist.
type rig struct {
	t         *testing.T
	c         *Controller
	cache     *fakeCache
	client    *fake.Clientset
	rec       *record.FakeRecorder
	dir       string // records
	conflist  string
	mu        sync.Mutex
	installed bool
	logs      *strings.Builder
}

func newRig(t *testing.T, mode Mode, mut ...func(*Config)) *rig {
	t.Helper()
	tmp := t.TempDir()
	r := &rig{t: t, cache: &fakeCache{synced: true, pods: map[string]*podcache.Entry{}}, client: fake.NewClientset(),
		rec: record.NewFakeRecorder(100), dir: filepath.Join(tmp, "sandboxes"), conflist: filepath.Join(tmp, "10-k8s.conflist"),
		installed: true, logs: &strings.Builder{}}
	conflist := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge"},{"type":"mesh-cni","sandboxDir":%q}]}`, r.dir)
	if err := os.WriteFile(r.conflist, []byte(conflist), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Mode: mode, NodeName: "n1", Cache: r.cache, Pods: r.client.CoreV1(), Recorder: r.rec,
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(syncWriter{r}, nil)),
		BackoffBase: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
		State: func() (string, bool) { r.mu.Lock(); defer r.mu.Unlock(); return r.conflist, r.installed }}
	for _, m := range mut {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	return r
}

type syncWriter struct{ r *rig }

func (w syncWriter) Write(b []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.logs.Write(b)
}

func (r *rig) log() string { r.mu.Lock(); defer r.mu.Unlock(); return r.logs.String() }

func (r *rig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.c.Run(ctx); close(done) }()
	r.t.Cleanup(func() { cancel(); <-done })
}

// addPod creates the pod in the fake API and delivers it to the cache.
func (r *rig) addPod(p *corev1.Pod) {
	r.t.Helper()
	if _, err := r.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		r.t.Fatal(err)
	}
	r.cache.set(r.t, p)
}

func (r *rig) record(p *corev1.Pod, decision string) {
	r.t.Helper()
	err := sandbox.Write(r.dir, sandbox.Record{ContainerID: "c-" + string(p.UID), Netns: "/var/run/netns/x", Namespace: p.Namespace,
		Name: p.Name, UID: string(p.UID), Decision: decision, Reason: "test", Time: time.Now().UTC()})
	if err != nil {
		r.t.Fatal(err)
	}
}

// eventually polls cond (no timed assertion: the deadline only bounds a
// hang).
func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("never: %s\nlog:\n%s", what, r.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// events drains the recorder: "Type Reason message" lines.
func (r *rig) events() []string {
	var out []string
	for {
		select {
		case e := <-r.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (r *rig) repairs(result string) float64 {
	return testutil.ToFloat64(r.c.m.repairs.WithLabelValues(string(r.c.cfg.Mode), result))
}

func (r *rig) gauge() float64 { return testutil.ToFloat64(r.c.m.unmeshed) }

// apiActions are the fake API's verbs on pods other than create/get/list/watch.
func (r *rig) apiActions() []string {
	var out []string
	for _, a := range r.client.Actions() {
		switch a.GetVerb() {
		case "create", "get", "list", "watch":
			continue
		}
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
	}
	return out
}

func reasons(events []string) string {
	var out []string
	for _, e := range events {
		f := strings.Fields(e)
		if len(f) >= 2 {
			out = append(out, f[0]+" "+f[1])
		}
	}
	return strings.Join(out, ",")
}

func readFile(p string) ([]byte, error)  { return os.ReadFile(p) }
func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o600) }

func apierrConflict() error {
	return apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, "web-1", errors.New("Precondition failed: UID in precondition: uid-1, UID in object meta: uid-2"))
}

func ptrTrue() *bool { b := true; return &b }
