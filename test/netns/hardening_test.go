package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// concurrentRounds is how many fresh netns get two racing ADDs. On nft,
// before the per-netns lock and the read-back, about one round in fifty
// ended with every rule doubled (the test failed within its first 20
// rounds every time it was run against that code).
const concurrentRounds = 100

// TestConcurrentAddsOneNetns: a runtime retrying an ADD while the first
// still runs. Two real mesh-cni processes ADD the same pod netns at once,
// round after round; both must succeed and the kernel must hold the seed's
// rules exactly once (and CHECK must pass).
func TestConcurrentAddsOneNetns(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			p := newPlugin(t, b, cnitest.SeedPod("default", "race", redirecttest.SeedAnnotations))
			want := seedReference(t, b)
			for round := range concurrentRounds {
				n, err := cnitest.NewNetns("mcni-race")
				if err != nil {
					t.Fatal(err)
				}
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for i := range errs {
					wg.Add(1)
					go func() { defer wg.Done(); errs[i] = run(p.cmd("ADD", n, "race")) }()
				}
				wg.Wait()
				err = errors.Join(errs...)
				if err == nil {
					err = holdsExactly(t, p, n, "race", want)
				}
				n.Delete()
				if err != nil {
					t.Fatalf("round %d of %d: %v", round+1, concurrentRounds, err)
				}
			}
		})
	}
}

// TestManyAddsInFlight: 110 pods (a node's default maximum) ADDed at once
// through the real binary, each into its own netns. Every one must end
// with the seed's rules exactly once; DEL must then leave every netns
// without a trace of mesh-cni.
func TestManyAddsInFlight(t *testing.T) {
	const pods = 110
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			p := newPlugin(t, b)
			want := seedReference(t, b)
			netns := make([]*cnitest.Netns, pods)
			for i := range netns {
				p.srv.Put(cnitest.SeedPod("default", fmt.Sprintf("pod-%d", i), redirecttest.SeedAnnotations))
				netns[i] = newNetns(t, "mcni-many")
			}
			errs := make([]error, pods)
			var wg sync.WaitGroup
			for i, n := range netns {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = run(p.cmd("ADD", n, fmt.Sprintf("pod-%d", i))) }()
			}
			wg.Wait()
			for i, n := range netns {
				if errs[i] != nil {
					t.Fatalf("pod-%d: ADD: %v", i, errs[i])
				}
				if err := holdsExactly(t, p, n, fmt.Sprintf("pod-%d", i), want); err != nil {
					t.Fatalf("pod-%d: %v", i, err)
				}
			}
			for i, n := range netns {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = run(p.cmd("DEL", n, fmt.Sprintf("pod-%d", i))) }()
			}
			wg.Wait()
			for i, n := range netns {
				if errs[i] != nil {
					t.Fatalf("pod-%d: DEL: %v", i, errs[i])
				}
				saved, err := tablesFor(n, b).Save(redirect.IPv4)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(saved, "ISTIO_") {
					t.Fatalf("pod-%d: DEL left\n%s", i, saved)
				}
			}
		})
	}
}

// holdXtablesLock makes another process hold /run/xtables.lock (the
// lock kube-proxy and every legacy iptables command take) until release.
func holdXtablesLock(t *testing.T) (release func()) {
	t.Helper()
	cmd := exec.Command("flock", "--exclusive", "/run/xtables.lock", "sh", "-c", "echo held; read _")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Read(make([]byte, 5)); err != nil { // "held": the lock is taken
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { stdin.Close(); _ = cmd.Wait() }) }
	t.Cleanup(release)
	return release
}

// TestXtablesLockHeld: another process holds the xtables lock. On legacy
// an ADD waits the configured time, then fails saying so, with nothing
// programmed; released in time, the ADD succeeds. nft does not use that
// lock: ADD goes through.
func TestXtablesLockHeld(t *testing.T) {
	rs := seedRules(t, redirecttest.SeedAnnotations)
	t.Run("legacy gives up", func(t *testing.T) {
		n := newNetns(t, "mcni-xlock")
		tb := &nat.Netns{Path: n.Path(), Backend: nat.Legacy, LockWait: 1e9}
		release := holdXtablesLock(t)
		err := redirect.Apply(tb, rs)
		release()
		if err == nil || !strings.Contains(err.Error(), "xtables lock") {
			t.Fatalf("ADD under a held lock: %v", err)
		}
		if saved, _ := tb.Save(redirect.IPv4); strings.Contains(saved, "ISTIO_") {
			t.Fatalf("a failed ADD programmed something:\n%s", saved)
		}
	})
	t.Run("legacy released in time", func(t *testing.T) {
		n := newNetns(t, "mcni-xlock")
		tb := &nat.Netns{Path: n.Path(), Backend: nat.Legacy, LockWait: 10e9}
		release := holdXtablesLock(t)
		done := make(chan error, 1)
		go func() { done <- redirect.Apply(tb, rs) }()
		time.Sleep(300 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("ADD finished while the xtables lock was held: %v", err)
		default: // waiting, as it should
		}
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := redirect.Verify(tb, rs); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("nft ignores it", func(t *testing.T) {
		n := newNetns(t, "mcni-xlock")
		tb := &nat.Netns{Path: n.Path(), Backend: nat.NFT, LockWait: 1e9}
		holdXtablesLock(t)
		if err := redirect.Apply(tb, rs); err != nil {
			t.Fatal(err)
		}
		if err := redirect.Verify(tb, rs); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNetnsLockHeld: while one mesh-cni process works on a netns, another
// waits for it, and gives up after its wait with an error that says why,
// having changed nothing. The lock is the netns file itself: taken through
// the runtime's bind mount, it holds for /proc/PID/ns/net too.
func TestNetnsLockHeld(t *testing.T) {
	n := newNetns(t, "mcni-nslock")
	holder := exec.Command("flock", "--exclusive", n.Path(), "sh", "-c", "echo held; read _")
	stdin, _ := holder.StdinPipe()
	out, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = holder.Wait() })
	if _, err := out.Read(make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	// A process inside the netns gives a second path to the same netns.
	sleeper := n.Command(0, 0, "sleep", "60")
	startProc(t, sleeper)
	procPath := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	waitNetnsPath(t, procPath, n.Path())
	rs := seedRules(t, redirecttest.SeedAnnotations)
	for _, path := range []string{n.Path(), procPath} {
		tb := &nat.Netns{Path: path, Backend: nat.NFT, LockWait: 3e8}
		err := redirect.Apply(tb, rs)
		if err == nil || !strings.Contains(err.Error(), "another mesh-cni process") {
			t.Fatalf("ADD via %s while the netns is locked: %v", path, err)
		}
		if saved, _ := tb.Save(redirect.IPv4); strings.Contains(saved, "ISTIO_") {
			t.Fatalf("ADD that could not lock programmed something:\n%s", saved)
		}
	}
	stdin.Close()
	_ = holder.Wait()
	tb := &nat.Netns{Path: procPath, Backend: nat.NFT, LockWait: 3e9}
	if err := redirect.Apply(tb, rs); err != nil {
		t.Fatal(err)
	}
}

// waitNetnsPath waits until nsenter has entered the netns (the process's
// /proc/PID/ns/net is the same inode as the bind mount).
func waitNetnsPath(t *testing.T, procPath, mount string) {
	t.Helper()
	want, err := os.Stat(mount)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if got, err := os.Stat(procPath); err == nil && os.SameFile(got, want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never entered %s", procPath, mount)
}

// unlocked hides nat.Netns's Lock: a writer that does not take our lock
// (another tool, or a mesh-cni from before the lock).
type unlocked struct{ n *nat.Netns }

func (u unlocked) Save(f redirect.Family) (string, error)    { return u.n.Save(f) }
func (u unlocked) Restore(f redirect.Family, s string) error { return u.n.Restore(f, s) }

// TestInterleavedWritersWithoutLock: even writers that do not serialise
// on the netns lock must leave the rules exactly once — Apply reads back
// what it wrote and repairs a doubling. On nft, two fresh restores racing
// double every rule about one time in fifty.
func TestInterleavedWritersWithoutLock(t *testing.T) {
	rs := seedRules(t, redirecttest.SeedAnnotations)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			want := seedReference(t, b)
			for round := range concurrentRounds {
				n, err := cnitest.NewNetns("mcni-interleave")
				if err != nil {
					t.Fatal(err)
				}
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for i := range errs {
					wg.Add(1)
					go func() { defer wg.Done(); errs[i] = redirect.Apply(unlocked{tablesFor(n, b)}, rs) }()
				}
				wg.Wait()
				err = errors.Join(errs...)
				if err == nil {
					if got := kernelRules(t, tablesFor(n, b), redirect.IPv4); !slices.Equal(got, want) {
						err = fmt.Errorf("kernel holds\n  %s", strings.Join(got, "\n  "))
					}
				}
				n.Delete()
				if err != nil {
					t.Fatalf("round %d of %d: %v", round+1, concurrentRounds, err)
				}
			}
		})
	}
}

// TestNetnsLockNests: a caller (the plug-in) may hold the netns lock around
// a whole verb and call Apply/Verify/Cleanup inside it; another process is
// kept out until the outermost unlock.
func TestNetnsLockNests(t *testing.T) {
	n := newNetns(t, "mcni-nest")
	tb := &nat.Netns{Path: n.Path(), Backend: nat.NFT, LockWait: 5e9}
	unlock, err := tb.Lock()
	if err != nil {
		t.Fatal(err)
	}
	rs := seedRules(t, redirecttest.SeedAnnotations)
	if err := redirect.Apply(tb, rs); err != nil {
		t.Fatal(err)
	}
	if err := redirect.Verify(tb, rs); err != nil {
		t.Fatal(err)
	}
	probe := func() error { return exec.Command("flock", "--nonblock", n.Path(), "true").Run() }
	if probe() == nil {
		t.Fatal("another process could lock the netns while the outer lock is held")
	}
	unlock()
	if err := probe(); err != nil {
		t.Fatalf("the netns stayed locked after the outermost unlock: %v", err)
	}
}
