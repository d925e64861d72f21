package installer

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fsnotify/fsnotify"
)

// TestOwnWritesDoNotTrigger: the event of our own write (same content hash)
// or removal is ignored; someone else's write, temp files and unrelated
// files are classified correctly.
func TestOwnWritesDoNotTrigger(t *testing.T) {
	n := newNode(t)
	in, err := New(n.config(t, "--health-addr=", "--metrics-addr="))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(n.net, "10-calico.conflist")
	must(t, in.write(p, []byte(`{"ours":1}`), 0o644, ""))
	if why := in.triggerFor(fsnotify.Event{Name: p, Op: fsnotify.Create}); why != "" {
		t.Errorf("own write triggered: %s", why)
	}
	must(t, os.WriteFile(p, []byte(`{"theirs":1}`), 0o644))
	if why := in.triggerFor(fsnotify.Event{Name: p, Op: fsnotify.Write}); why == "" {
		t.Error("foreign write ignored")
	}
	must(t, in.remove(p))
	if why := in.triggerFor(fsnotify.Event{Name: p, Op: fsnotify.Remove}); why != "" {
		t.Errorf("own removal triggered: %s", why)
	}
	if why := in.triggerFor(fsnotify.Event{Name: p, Op: fsnotify.Remove}); why == "" {
		t.Error("a second (foreign) removal was ignored")
	}
	for _, ev := range []fsnotify.Event{
		{Name: filepath.Join(n.net, tempPrefix+"x"), Op: fsnotify.Create},
		{Name: filepath.Join(n.net, "README"), Op: fsnotify.Create},
		{Name: filepath.Join(n.bin, "bridge"), Op: fsnotify.Create},
		{Name: filepath.Join(n.net, "10-calico.conflist"), Op: fsnotify.Chmod},
	} {
		if why := in.triggerFor(ev); why != "" {
			t.Errorf("%v triggered: %s", ev, why)
		}
	}
	for _, ev := range []fsnotify.Event{
		{Name: filepath.Join(n.net, "05-new.conf"), Op: fsnotify.Create},
		{Name: filepath.Join(n.net, OwnerFileName), Op: fsnotify.Write},
		{Name: filepath.Join(n.bin, PluginType), Op: fsnotify.Remove},
		{Name: filepath.Join(n.sa, "..data"), Op: fsnotify.Create},
	} {
		if why := in.triggerFor(ev); why == "" {
			t.Errorf("%v ignored", ev)
		}
	}
}
