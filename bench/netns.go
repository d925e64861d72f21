package main

// The benchmark's network namespaces: every one is deleted on any exit path.

import (
	"errors"
	"os"
	"sync"

	"github.com/meshcni/mesh-cni/test/cnitest"
)

// tracker remembers every namespace this run created so that any exit
// path deletes them; creation and deletion hold the lock, so an interrupt
// never races a half-registered namespace.
type tracker struct {
	mu      sync.Mutex
	live    map[string]*cnitest.Netns
	created []string
	closed  bool
}

var errClosed = errors.New("interrupted")

func (t *tracker) create() (*cnitest.Netns, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	n, err := cnitest.NewNetns(netnsPrefix)
	if err != nil {
		return nil, err
	}
	if t.live == nil {
		t.live = map[string]*cnitest.Netns{}
	}
	t.live[n.Name] = n
	t.created = append(t.created, n.Name)
	return n, nil
}

func (t *tracker) delete(n *cnitest.Netns) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.live[n.Name]; ok {
		n.Delete()
		delete(t.live, n.Name)
	}
}

func (t *tracker) deleteAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for name, n := range t.live {
		n.Delete()
		delete(t.live, name)
	}
}

// leftovers are created namespaces that still exist in /run/netns.
func (t *tracker) leftovers() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var left []string
	for _, name := range t.created {
		if _, err := os.Stat("/run/netns/" + name); err == nil {
			left = append(left, name)
		}
	}
	return left
}
