// Package podcache is the agent's view of the pods on its node: one
// node-scoped list/watch (field selector spec.nodeName) whose objects are
// cut down to what podcheck and redirect read (pkg/pod) as they arrive, and
// a lookup that waits a bounded time for a pod the watch has not delivered
// yet.
package podcache

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// Entry is one cached pod: its identity and the decoded fields.
type Entry struct {
	metav1.TypeMeta
	metav1.ObjectMeta // Name, Namespace, UID, ResourceVersion only
	Pod               pod.Pod
	Status            Status // what the repair controller reads
}

// DeepCopyObject satisfies runtime.Object. Entries are never modified
// after the transform builds them (nor their slices), so a shallow copy is
// a copy.
func (e *Entry) DeepCopyObject() runtime.Object { c := *e; return &c }

// Reduce cuts an API pod down to an Entry. It goes through the pod's JSON
// so the cache keeps exactly the fields pkg/pod declares, whatever they are.
func Reduce(p *corev1.Pod) (*Entry, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	e := &Entry{ObjectMeta: metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
	}, Status: statusOf(p)}
	if err := json.Unmarshal(raw, &e.Pod); err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return e, nil
}

func transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return Reduce(o)
	default: // already an Entry, or a tombstone of one
		return obj, nil
	}
}

// Hooks tell the agent what the cache does (metrics, logs); nil fields are
// skipped.
type Hooks struct {
	WatchError func(error)
	Changed    func(size int)
}

// Cache is the node's pods.
type Cache struct {
	inf   cache.SharedIndexInformer
	hooks Hooks

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
}

// New builds the cache over lw (see NodeListWatch). Nothing runs before Run.
func New(lw cache.ListerWatcher, hooks Hooks) (*Cache, error) {
	c := &Cache{hooks: hooks, changed: make(chan struct{})}
	c.inf = cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	if err := c.inf.SetTransform(transform); err != nil {
		return nil, err
	}
	if hooks.WatchError != nil {
		if err := c.inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) { hooks.WatchError(err) }); err != nil {
			return nil, err
		}
	}
	notify := func(any) { c.broadcast() }
	if _, err := c.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, n any) { notify(n) },
		DeleteFunc: notify,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// NodeListWatch lists and watches the pods bound to node.
func NodeListWatch(getter cache.Getter, node string) cache.ListerWatcher {
	return cache.NewListWatchFromClient(getter, "pods", metav1.NamespaceAll,
		fields.OneTermEqualSelector("spec.nodeName", node))
}

func (c *Cache) broadcast() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if c.hooks.Changed != nil {
		c.hooks.Changed(len(c.inf.GetStore().ListKeys()))
	}
}

func (c *Cache) waitCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Run runs the list/watch until ctx is done.
func (c *Cache) Run(ctx context.Context) { c.inf.Run(ctx.Done()) }

// Synced reports whether the initial list has been delivered.
func (c *Cache) Synced() bool { return c.inf.HasSynced() }

// Peek returns the cached pod without waiting.
func (c *Cache) Peek(namespace, name string) (*Entry, bool) {
	obj, ok, err := c.inf.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	e, ok := obj.(*Entry)
	return e, ok
}

// Lookup returns the pod namespace/name — with uid, when uid is not empty —
// waiting up to wait for the watch to deliver it. A cached pod with another
// UID is an earlier or later pod of the same name, never this one.
func (c *Cache) Lookup(ctx context.Context, namespace, name, uid string, wait time.Duration) (*Entry, bool) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		ch := c.waitCh() // before the look, so no change is missed
		if e, ok := c.Peek(namespace, name); ok && (uid == "" || string(e.UID) == uid) {
			return e, true
		}
		if wait <= 0 {
			return nil, false
		}
		select {
		case <-ch:
		case <-timeout:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
}
