package installer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSymlinkedConflist: a primary conflist that is a symlink (a file some
// other tool manages elsewhere) is written through: the link stays the
// same link, the file it points to gets our entry, a rewrite of that file
// by its tool is merged again, and cleanup restores that file. Two names
// of one file (a link to another config file of the net dir) are one file:
// no fight between them.
func TestSymlinkedConflist(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target func(n *node) string // where the link points
	}{
		{"to-a-file-beside-it", func(n *node) string { return filepath.Join(n.net, "calico.real") }},
		{"to-another-config-name", func(n *node) string { return filepath.Join(n.net, "20-calico.conflist") }},
		{"outside-the-net-dir", func(n *node) string { return filepath.Join(n.root, "managed", "calico.conflist") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			const name = "10-calico.conflist"
			target := tc.target(n)
			must(t, os.MkdirAll(filepath.Dir(target), 0o755))
			must(t, os.WriteFile(target, []byte(primaryVersion(t, 1)), 0o640))
			link := filepath.Join(n.net, name)
			must(t, os.Symlink(target, link))
			linkIntact := func() (bool, string) {
				dest, err := os.Readlink(link)
				if err != nil || dest != target {
					return false, "the link was replaced: " + dest + " " + errString(err)
				}
				return true, ""
			}

			r := start(t, n.config(t))
			r.waitReady(t)
			if ok, why := linkIntact(); !ok {
				t.Fatal(why)
			}
			if ok, why := holdsPrimary(n.net, name, primaryVersion(t, 1)); !ok {
				t.Fatal(why)
			}
			if m := mode(t, target); m != 0o640 {
				t.Errorf("target mode %v, want 0640 kept", m)
			}

			// The managing tool replaces its file: merged again.
			must(t, replaceFile(filepath.Dir(target), filepath.Base(target), primaryVersion(t, 2)))
			eventually(t, 5*time.Second, "entry merged into the tool's rewrite", func() (bool, string) {
				if ok, why := linkIntact(); !ok {
					return false, why
				}
				return holdsPrimary(n.net, name, primaryVersion(t, 2))
			})
			// Settled: no fight between two names of one file.
			p0 := r.passes.Load()
			eventually(t, 10*time.Second, "the repair's pass done", func() (bool, string) { return r.passes.Load() > p0, "" })
			installs := r.counter("mesh_cni_installs_total", "file", "conflist")
			p0 = r.passes.Load()
			eventually(t, 10*time.Second, "three passes", func() (bool, string) { return r.passes.Load() >= p0+3, "" })
			if got := r.counter("mesh_cni_installs_total", "file", "conflist"); got != installs {
				t.Errorf("config rewritten %v times without drift", got-installs)
			}

			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if ok, why := linkIntact(); !ok {
				t.Fatal(why)
			}
			if got := mustRead(t, target); !compactEqual(got, []byte(primaryVersion(t, 2))) {
				t.Errorf("cleanup did not restore the target:\n%s", got)
			}
			assertNoTemps(t, n)
			ents, _ := os.ReadDir(filepath.Dir(target))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), tempPrefix) {
					t.Errorf("temp file left beside the target: %s", e.Name())
				}
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
