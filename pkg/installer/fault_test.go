package installer

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// mount runs mount(8) with args; the test fails when it cannot (these
// tests need root, as the rest of the suite).
func mount(t *testing.T, args ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %v: %v\n%s", args, err, out)
	}
}

// unmountAtEnd unmounts dir when the test ends (after the installers
// started later have stopped: cleanups run last-registered first).
func unmountAtEnd(t *testing.T, dir string) {
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
}

// fillDisk writes a filler file in dir until the filesystem is full.
func fillDisk(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "zz-filler"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

func notReadyFor(r *running, why string) func() (bool, string) {
	return func() (bool, string) {
		code, body := get(r.HealthAddr(), "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, why), body
	}
}

// TestDiskFull: the net dir's filesystem (a small tmpfs) fills up right
// when the installer must repair the entry. The write fails with an error
// naming the cause, the primary's file stays exactly as the primary wrote
// it, no temp file is left, /readyz says why; once there is room again the
// entry is repaired.
func TestDiskFull(t *testing.T) {
	n := newNode(t)
	mount(t, "-t", "tmpfs", "-o", "size=256k", "tmpfs", n.net)
	unmountAtEnd(t, n.net)
	const name = "10-calico.conflist"
	n.write(t, name, primaryVersion(t, 1))
	var armed atomic.Bool
	cfg := n.config(t)
	cfg.hooks = &raceHooks{afterRead: func(string) {
		// The disk is full after every repair's read (topped up, as space
		// a replaced file held may be freed late): the write hits ENOSPC.
		if armed.Load() {
			if err := fillDisk(n.net); err != nil {
				t.Error(err)
			}
		}
	}}
	r := start(t, cfg)
	r.waitReady(t)
	armed.Store(true)

	v2 := primaryVersion(t, 2)
	must(t, replaceFile(n.net, name, v2))
	eventually(t, 10*time.Second, "not ready, naming the full disk", notReadyFor(r, "no space left on device"))
	if got := n.read(t, name); got != v2 {
		t.Fatalf("the primary's file changed while the disk was full:\n%s", got)
	}
	// The installer keeps retrying, so a temp file of an attempt in flight
	// may be seen for an instant; a leaked one stays and fails this.
	eventually(t, 5*time.Second, "no temp file left by the failed writes", func() (bool, string) {
		left := temps(n)
		return len(left) == 0, strings.Join(left, " ")
	})
	if !strings.Contains(r.logs.String(), "no space left on device") {
		t.Error("the log does not name the full disk")
	}

	armed.Store(false)
	must(t, os.Remove(filepath.Join(n.net, "zz-filler")))
	eventually(t, 10*time.Second, "repaired once there is room", func() (bool, string) { return holdsPrimary(n.net, name, v2) })
	r.waitReady(t)
	assertNoTemps(t, n)
}

// TestReadOnlyNetDir: the installer sees the net dir through a bind mount
// (as in its pod) that turns read-only; the primary CNI writes the real
// directory. A repair then fails with an error naming the cause, nothing
// is corrupted, /readyz says why; read-write again, it repairs. Read-only
// from the start, the installer refuses to run with that error and writes
// nothing.
func TestReadOnlyNetDir(t *testing.T) {
	const name = "10-calico.conflist"
	setup := func(t *testing.T) (*node, string, Config) {
		n := newNode(t)
		view := filepath.Join(n.root, "view", "net.d")
		must(t, os.MkdirAll(view, 0o755))
		mount(t, "--bind", n.net, view)
		unmountAtEnd(t, view)
		n.write(t, name, primaryVersion(t, 1))
		cfg := n.config(t, "--cni-net-dir="+view, "--kubeconfig-dir="+view)
		return n, view, cfg
	}

	t.Run("while-running", func(t *testing.T) {
		n, view, cfg := setup(t)
		r := start(t, cfg)
		r.waitReady(t)
		mount(t, "-o", "remount,bind,ro", view)
		v2 := primaryVersion(t, 2)
		must(t, replaceFile(n.net, name, v2))
		eventually(t, 10*time.Second, "not ready, naming the read-only dir", notReadyFor(r, "read-only file system"))
		if got := n.read(t, name); got != v2 {
			t.Fatalf("the primary's file changed:\n%s", got)
		}
		assertNoTemps(t, n)
		mount(t, "-o", "remount,bind,rw", view)
		eventually(t, 10*time.Second, "repaired once writable", func() (bool, string) { return holdsPrimary(n.net, name, v2) })
		r.waitReady(t)
	})

	t.Run("from-the-start", func(t *testing.T) {
		n, view, cfg := setup(t)
		mount(t, "-o", "remount,bind,ro", view)
		r := start(t, cfg)
		select {
		case err := <-r.done:
			r.cancel()
			r.cancel = nil
			if err == nil || !strings.Contains(err.Error(), "read-only file system") {
				t.Fatalf("Run on a read-only net dir: %v, want an error naming it", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not give up on a read-only net dir")
		}
		if got := n.read(t, name); got != primaryVersion(t, 1) {
			t.Fatalf("the primary's file changed:\n%s", got)
		}
		assertNoTemps(t, n)
	})
}
