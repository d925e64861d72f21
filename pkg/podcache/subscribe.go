package podcache

import (
	"k8s.io/client-go/tools/cache"
)

// EventType says what happened to a cached pod.
type EventType string

// The event types a subscriber sees.
const (
	Added   EventType = "added"
	Updated EventType = "updated"
	Deleted EventType = "deleted"
)

// Event is one change of a cached pod: Entry is the pod as it is now (as it
// was last seen, for Deleted).
type Event struct {
	Type  EventType
	Entry *Entry
}

// Subscribe calls fn for every pod change, in the watch's order, from the
// informer's goroutine: fn must not block (queue the key and return). The
// pods already cached are delivered as Added. Subscribe may be called
// before or after Run.
func (c *Cache) Subscribe(fn func(Event)) error {
	send := func(t EventType, obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if e, ok := obj.(*Entry); ok {
			fn(Event{Type: t, Entry: e})
		}
	}
	_, err := c.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { send(Added, obj) },
		UpdateFunc: func(_, obj any) { send(Updated, obj) },
		DeleteFunc: func(obj any) { send(Deleted, obj) },
	})
	return err
}

// List is every cached pod.
func (c *Cache) List() []*Entry {
	objs := c.inf.GetStore().List()
	out := make([]*Entry, 0, len(objs))
	for _, o := range objs {
		if e, ok := o.(*Entry); ok {
			out = append(out, e)
		}
	}
	return out
}
