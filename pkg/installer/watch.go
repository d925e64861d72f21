package installer

import (
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// dirWatcher watches the net dir, the bin dir, the kubeconfig dir and the
// service account dir (kubelet swaps its `..data` symlink on token
// rotation).
type dirWatcher struct {
	w      *fsnotify.Watcher
	in     *Installer
	dirs   []string
	events chan fsnotify.Event
	errors chan error
}

func newDirWatcher(in *Installer) (*dirWatcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	d := &dirWatcher{
		w:      fw,
		in:     in,
		dirs:   uniq(clean(in.cfg.NetDir), clean(in.cfg.BinDir), clean(in.cfg.KubeconfigDir), clean(in.cfg.ServiceAccountDir)),
		events: nil,
		errors: nil,
	}
	d.events = fw.Events
	d.errors = fw.Errors
	for _, dir := range d.dirs {
		if err := fw.Add(dir); err != nil {
			// The service account dir may be missing outside a pod; the
			// resync retries every directory.
			in.log.Warn("cannot watch directory; relying on the periodic check until it can", "dir", dir, "err", err)
		}
	}
	return d, nil
}

// rewatch re-adds every directory: a directory deleted and re-created loses
// its inotify watch.
func (d *dirWatcher) rewatch() {
	watched := map[string]bool{}
	for _, p := range d.w.WatchList() {
		watched[clean(p)] = true
	}
	for _, dir := range d.dirs {
		if watched[dir] {
			continue
		}
		if dir != clean(d.in.cfg.ServiceAccountDir) {
			_ = mkdirAll(dir)
		}
		if err := d.w.Add(dir); err == nil {
			d.in.log.Info("watching directory again", "dir", dir)
		}
	}
}

func (d *dirWatcher) close() { _ = d.w.Close() }

// triggerFor returns why ev needs a reconcile, or "" when it does not: an
// unrelated file, a temp file, or our own write or removal (recognised by
// content hash, so we never loop on our own writes).
func (in *Installer) triggerFor(ev fsnotify.Event) string {
	if ev.Op == fsnotify.Chmod {
		return ""
	}
	name := filepath.Base(ev.Name)
	dir := clean(filepath.Dir(ev.Name))
	if strings.HasPrefix(name, tempPrefix) {
		return ""
	}
	relevant := false
	switch {
	case dir == clean(in.cfg.ServiceAccountDir):
		relevant = true
	case dir == clean(in.cfg.NetDir) && (isConfName(name) || name == OwnerFileName):
		relevant = true
	case in.linkTargets[clean(ev.Name)]: // what a config symlink points to (when in a watched dir)
		relevant = true
	case dir == clean(in.cfg.BinDir) && name == PluginType:
		relevant = true
	case dir == clean(in.cfg.KubeconfigDir) && (name == KubeconfigName || name == TokenName):
		relevant = true
	}
	if !relevant {
		return ""
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if in.ownRemoved[ev.Name] {
			delete(in.ownRemoved, ev.Name)
			return ""
		}
	}
	// Dismissed only when the file holds, byte for byte, what we last wrote
	// there (our atomic swap also reports the name as moved away). A
	// foreign write, even one racing ours, leaves other bytes and is acted
	// on; our guarded writes never replace such bytes (commit.go).
	if in.isOwnWrite(ev.Name) {
		return ""
	}
	return ev.Op.String() + " " + ev.Name
}

func clean(p string) string { return filepath.Clean(p) }
