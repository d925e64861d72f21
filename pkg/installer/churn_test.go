package installer

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeInPlace rewrites name with truncate + write, as a shell redirect or
// a naive agent does (readers may see it half written).
func writeInPlace(dir, name, content string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}

// TestPrimaryRewritesInATightLoop: the primary CNI rewrites its conflist as
// fast as it can while the installer repairs it. Whatever the interleaving,
// no version of the primary is reverted: once it stops, the file holds its
// last content and exactly one mesh-cni entry, last. Both ways of writing:
// atomic (temp + rename) and in place (truncate + write).
func TestPrimaryRewritesInATightLoop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(dir, name, content string) error
	}{
		{"atomic", replaceFile},
		{"in-place", writeInPlace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			const name = "10-calico.conflist"
			n.write(t, name, primaryVersion(t, 0))
			r := start(t, n.config(t))
			r.waitReady(t)
			const versions = 200
			for v := 1; v <= versions; v++ {
				must(t, tc.write(n.net, name, primaryVersion(t, v)))
			}
			eventually(t, 10*time.Second, "the last version merged", func() (bool, string) {
				return holdsPrimary(n.net, name, primaryVersion(t, versions))
			})
			// And it stays so: nothing older comes back later.
			p0 := r.passes.Load()
			eventually(t, 10*time.Second, "three passes", func() (bool, string) { return r.passes.Load() >= p0+3, "" })
			if ok, why := holdsPrimary(n.net, name, primaryVersion(t, versions)); !ok {
				t.Fatal(why)
			}
			r.waitReady(t)
			assertNoTemps(t, n)
		})
	}
}

// TestPrimaryRewritesInBursts: bursts of rewrites with pauses shorter and
// longer than a repair. After every burst the primary's last content is
// there with our entry re-inserted, last, exactly once.
func TestPrimaryRewritesInBursts(t *testing.T) {
	n := newNode(t)
	const name = "10-calico.conflist"
	n.write(t, name, primaryVersion(t, 0))
	r := start(t, n.config(t))
	r.waitReady(t)
	v := 0
	for burst := 0; burst < 12; burst++ {
		for i := 0; i < 15; i++ {
			v++
			write := replaceFile
			if v%3 == 0 {
				write = writeInPlace
			}
			must(t, write(n.net, name, primaryVersion(t, v)))
			if burst%2 == 1 {
				time.Sleep(time.Duration(i%4) * time.Millisecond) // spacing around a repair's length
			}
		}
		last := primaryVersion(t, v)
		eventually(t, 10*time.Second, "burst merged", func() (bool, string) { return holdsPrimary(n.net, name, last) })
	}
	r.waitReady(t)
	// Let the pass in flight end (its temp file lives until the swap is
	// checked), then nothing may be left.
	p0 := r.passes.Load()
	eventually(t, 10*time.Second, "two passes", func() (bool, string) { return r.passes.Load() >= p0+2, "" })
	if got := r.counter("mesh_cni_repairs_total", "reason", "missing"); got < 12 {
		t.Errorf("repairs of the missing entry: %v, want >= 12 (one per burst at least)", got)
	}
	assertNoTemps(t, n)
}
