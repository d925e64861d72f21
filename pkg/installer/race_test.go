package installer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// primaryVersion is the calico conflist as the primary CNI would rewrite it:
// version v adds a plug-in of its own and changes a value, so content that
// is lost (reverted to an older version) shows.
func primaryVersion(t testing.TB, v int) string {
	t.Helper()
	base := testdata(t, "calico/in/10-calico.conflist")
	extra := fmt.Sprintf(`{"type": "tuning", "sysctl": {"net.core.somaxconn": "%d"}},
    {
      "type": "portmap",`, 1000+v)
	out := strings.Replace(base, `{
      "type": "portmap",`, extra, 1)
	if out == base {
		t.Fatal("calico fixture changed; primaryVersion cannot edit it")
	}
	return out
}

// holdsPrimary says whether the conflist in dir holds exactly want's
// plug-ins (in order, same JSON) plus exactly one mesh-cni entry, last.
func holdsPrimary(dir, name, want string) (bool, string) {
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return false, err.Error()
	}
	if ok, why := chainedLast(dir); !ok {
		return false, why
	}
	stripped, _, err := RemoveEntries(got)
	if err != nil {
		return false, err.Error()
	}
	if !compactEqual(stripped, []byte(want)) {
		return false, "the primary's content is not what it last wrote:\n" + string(got)
	}
	return true, ""
}

// replaceFile writes name atomically (temp + rename) as a primary CNI does;
// it is safe to call from the installer's goroutine (no t.Fatal).
func replaceFile(dir, name, content string) error {
	tmp := filepath.Join(dir, ".primary-tmp-"+name)
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// TestPrimaryRewriteDuringMerge is defect 6 of issue 10: the primary CNI
// rewrites its conflist after the installer read it and before the
// installer's merged file lands. The installer must never put back the
// older content: the final file holds the primary's newest plug-ins and our
// entry, last. The hooks land the rewrite at the two worst instants: right
// after the read, and right before the rename syscall.
func TestPrimaryRewriteDuringMerge(t *testing.T) {
	for _, stage := range []string{"after-read", "before-rename"} {
		t.Run(stage, func(t *testing.T) {
			n := newNode(t)
			const name = "10-calico.conflist"
			n.write(t, name, primaryVersion(t, 1))
			newer := primaryVersion(t, 2)
			var fired atomic.Bool
			var hookErr atomic.Value
			land := func(path string) {
				if filepath.Base(path) != name || !fired.CompareAndSwap(false, true) {
					return
				}
				if err := replaceFile(n.net, name, newer); err != nil {
					hookErr.Store(err)
				}
			}
			cfg := n.config(t)
			if stage == "after-read" {
				cfg.hooks = &raceHooks{afterRead: land}
			} else {
				cfg.hooks = &raceHooks{beforeRename: land}
			}
			r := start(t, cfg)
			eventually(t, 10*time.Second, "the primary's rewrite landed mid-write", func() (bool, string) { return fired.Load(), "" })
			if err, _ := hookErr.Load().(error); err != nil {
				t.Fatal(err)
			}
			// Events and several resync passes later the file must hold
			// the newer content: a lost rewrite would stay lost.
			p0 := r.passes.Load()
			eventually(t, 10*time.Second, "five passes", func() (bool, string) { return r.passes.Load() >= p0+5, "" })
			if ok, why := holdsPrimary(n.net, name, newer); !ok {
				t.Fatal(why)
			}
			r.waitReady(t)
			if c := r.counter("mesh_cni_write_conflicts_total"); c < 1 {
				t.Errorf("write conflicts counted: %v, want >= 1", c)
			}
			assertNoTemps(t, n)
		})
	}
}

// TestConfRewriteDuringConversion: the primary is a .conf, which the
// installer converts to a .conflist and then removes. The primary rewrites
// its .conf right after the read: the removal must not delete the newer
// .conf; the converted list must end up holding the newer plug-in, and
// cleanup must restore the newer .conf byte for byte.
func TestConfRewriteDuringConversion(t *testing.T) {
	n := newNode(t)
	bridge := testdata(t, "bridge-conf/in/10-bridge.conf")
	newer := strings.Replace(bridge, `"cni0"`, `"cni1"`, 1)
	if newer == bridge {
		t.Fatal("bridge fixture changed; cannot edit it")
	}
	n.write(t, "10-bridge.conf", bridge)
	var fired atomic.Bool
	cfg := n.config(t)
	cfg.hooks = &raceHooks{afterRead: func(path string) {
		if filepath.Base(path) == "10-bridge.conflist" && fired.CompareAndSwap(false, true) {
			if err := replaceFile(n.net, "10-bridge.conf", newer); err != nil {
				t.Error(err)
			}
		}
	}}
	r := start(t, cfg)
	r.waitReady(t)
	if !fired.Load() {
		t.Fatal("the rewrite never landed")
	}
	eventually(t, 5*time.Second, "newer .conf converted", func() (bool, string) {
		if exists(filepath.Join(n.net, "10-bridge.conf")) {
			return false, ".conf still there"
		}
		list, err := ConfToConfList([]byte(newer))
		if err != nil {
			return false, err.Error()
		}
		return holdsPrimary(n.net, "10-bridge.conflist", string(list))
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := n.read(t, "10-bridge.conf"); got != newer {
		t.Errorf("cleanup restored:\n%s\nwant the newer .conf:\n%s", got, newer)
	}
	if exists(filepath.Join(n.net, "10-bridge.conflist")) {
		t.Error("converted list left after cleanup")
	}
	assertNoTemps(t, n)
}

// TestGuardedCommitGivesWay: the guarded primitives change nothing when
// the file is not what the plan was computed from.
func TestGuardedCommitGivesWay(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "10-x.conflist")
	must(t, os.WriteFile(p, []byte("theirs, newer"), 0o644))
	if err := removeGuarded(p, guard{data: []byte("what we read")}); !errors.Is(err, errChanged) {
		t.Errorf("removeGuarded over newer content: %v, want errChanged", err)
	}
	for _, g := range []guard{{data: []byte("what we read")}, {absent: true}} {
		tmp := filepath.Join(dir, tempPrefix+"t")
		must(t, os.WriteFile(tmp, []byte("ours"), 0o644))
		if err := commitGuarded(tmp, p, []byte("ours"), g, nil); !errors.Is(err, errChanged) {
			t.Errorf("commitGuarded(%+v): %v, want errChanged", g, err)
		}
		if exists(tmp) {
			t.Error("temp file left")
		}
	}
	if got, _ := os.ReadFile(p); string(got) != "theirs, newer" {
		t.Errorf("file changed: %q", got)
	}
	// The exchange path when someone else wins the instant before the
	// swap: their content is put back.
	tmp := filepath.Join(dir, tempPrefix+"u")
	must(t, os.WriteFile(tmp, []byte("ours"), 0o644))
	err := commitGuarded(tmp, p, []byte("ours"), guard{data: []byte("theirs, newer")}, func() {
		must(t, replaceFile(dir, "10-x.conflist", "theirs, newest"))
	})
	if !errors.Is(err, errChanged) {
		t.Errorf("commitGuarded with a write before the swap: %v, want errChanged", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "theirs, newest" {
		t.Errorf("file after the put-back: %q", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left: %v", ents)
	}
}
