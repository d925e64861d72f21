package installer

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// stateLog records what OnState is told.
type stateLog struct {
	mu     sync.Mutex
	states []State
}

func (l *stateLog) add(s State) { l.mu.Lock(); defer l.mu.Unlock(); l.states = append(l.states, s) }

func (l *stateLog) last() (State, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.states) == 0 {
		return State{}, 0
	}
	return l.states[len(l.states)-1], len(l.states)
}

// TestOnState: OnState follows the installation: not installed while there
// is no primary, installed (with the conflist the runtime uses, as libcni
// independently finds it) once chained, not installed while the binary is
// gone, and told "shutting down" when cleanup starts.
func TestOnState(t *testing.T) {
	n := newNode(t)
	log := &stateLog{}
	cfg := n.config(t)
	cfg.OnState = log.add
	r := start(t, cfg)

	waitState := func(what string, cond func(State) bool) State {
		t.Helper()
		var got State
		eventually(t, 10*time.Second, what, func() (bool, string) {
			s, k := log.last()
			got = s
			return k > 0 && cond(s), fmt.Sprintf("%+v", s)
		})
		return got
	}
	s := waitState("not installed without a primary", func(s State) bool { return !s.Installed })
	if s.ConflistPath != "" || s.Reason == "" {
		t.Errorf("without a primary: %+v (want no conflist and a reason)", s)
	}

	n.replace(t, "10-flannel.conflist", testdata(t, "flannel/in/10-flannel.conflist"))
	s = waitState("installed", func(s State) bool { return s.Installed })
	ok, name := chainedLast(n.net)
	if !ok || s.ConflistPath != filepath.Join(n.net, name) || s.Reason != "" {
		t.Errorf("installed state %+v; the runtime uses %s (chained last: %v)", s, name, ok)
	}

	// Every reconcile pass reports, also one that repairs: the binary
	// vanishes and is put back within the same pass.
	_, before := log.last()
	must(t, os.Remove(filepath.Join(n.bin, PluginType)))
	eventually(t, 10*time.Second, "a report after the repair", func() (bool, string) {
		s, k := log.last()
		return k > before && s.Installed && exists(filepath.Join(n.bin, PluginType)), fmt.Sprintf("%+v", s)
	})

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	s, _ = log.last()
	if s.Installed || s.Reason != "shutting down" {
		t.Errorf("state at cleanup: %+v", s)
	}
}
