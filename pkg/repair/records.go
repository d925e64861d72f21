package repair

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// debounce gathers a burst of record writes (a node starting many pods)
// into one pass.
const debounce = 100 * time.Millisecond

// recordSet is the plug-in's ADD records: a snapshot re-read after the
// records dir changed (inotify), and the watch that says so.
type recordSet struct {
	log     *slog.Logger
	changed func()

	mu       sync.Mutex
	dir      string // the dir watched and snapshotted
	entries  []sandbox.Entry
	dirty    bool
	w        *fsnotify.Watcher
	reported map[string]bool // unreadable records already logged
}

func newRecordSet(log *slog.Logger, changed func()) *recordSet {
	return &recordSet{log: log, changed: changed, dirty: true, reported: map[string]bool{}}
}

// watch makes sure dir is the one watched (the installed config names it;
// it may change with the config). A dir the plug-in has not created yet is
// not created here (the agent leaves nothing on the host it did not need):
// it is looked for again at the next call, and read as no records meanwhile.
func (s *recordSet) watch(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dir == s.dir || dir == "" {
		return
	}
	if _, err := os.Stat(dir); err != nil {
		return
	}
	s.stopLocked()
	s.dir, s.dirty = dir, true
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(dir)
	}
	if err != nil {
		if w != nil {
			_ = w.Close()
		}
		s.log.Warn("cannot watch the sandbox records dir; only the safety resync looks at it", "dir", dir, "error", err)
		return
	}
	s.w = w
	go s.loop(w)
	// Records written before the watch started are read by the next pass.
	go s.changed()
}

func (s *recordSet) loop(w *fsnotify.Watcher) {
	var fire <-chan time.Time
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			base := ev.Name[strings.LastIndexByte(ev.Name, '/')+1:]
			if !strings.HasSuffix(base, ".json") || strings.HasPrefix(base, ".") {
				continue // a temp file of an atomic write
			}
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
			if fire == nil {
				fire = time.After(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.mu.Lock()
			s.dirty = true // an overflow lost events: read it all again
			s.mu.Unlock()
			s.log.Warn("sandbox records watch error; re-reading the records", "error", err)
			s.changed()
		case <-fire:
			fire = nil
			s.changed()
		}
	}
}

func (s *recordSet) stopLocked() {
	if s.w != nil {
		_ = s.w.Close()
		s.w = nil
	}
}

func (s *recordSet) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// snapshot is the records as last read, read again if the dir changed.
func (s *recordSet) snapshot(dir string) []sandbox.Entry {
	s.mu.Lock()
	fresh := s.dirty || dir != s.dir
	entries := s.entries
	s.mu.Unlock()
	if fresh {
		return s.fresh(dir)
	}
	return entries
}

// fresh reads the records now; an unreadable dir is no records (reported).
func (s *recordSet) fresh(dir string) []sandbox.Entry {
	s.mu.Lock()
	if dir == s.dir {
		s.dirty = false // events after this point mark it again
	}
	s.mu.Unlock()
	entries, err := sandbox.List(dir)
	if err != nil {
		s.log.Warn("cannot read the sandbox records", "dir", dir, "error", err)
	}
	s.mu.Lock()
	if dir == s.dir {
		s.entries = entries
	}
	s.mu.Unlock()
	return entries
}

// reportBad logs each unreadable record once: reported, never fatal, and
// never taken as a record of any pod.
func (s *recordSet) reportBad(entries []sandbox.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		if e.Err != nil && !s.reported[e.Path] {
			s.reported[e.Path] = true
			s.log.Warn("unreadable sandbox record ignored", "path", e.Path, "error", e.Err)
		}
	}
}

// remove prunes the record of a pod gone.
func (s *recordSet) remove(dir string, r sandbox.Record) {
	if err := sandbox.Remove(dir, r.ContainerID); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("cannot prune a stale sandbox record", "containerID", r.ContainerID, "error", err)
		return
	}
	s.log.Info("pruned the record of a sandbox whose pod is gone", "containerID", r.ContainerID,
		"pod", r.Namespace+"/"+r.Name, "uid", r.UID, "recorded", r.Time)
}
