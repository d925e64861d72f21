package podnetns

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/meshcni/mesh-cni/test/cnitest"
)

// The real cases: sleep processes standing in for a pod's containers, in
// a netns the test made and a cgroup whose path names the pod UID as a
// kubelet would, found through the host's real /proc.

func needRoot(t *testing.T) {
	t.Helper()
	if why := cnitest.RequireRoot(); why != "" {
		t.Skip(why)
	}
}

func newNetns(t *testing.T) *cnitest.Netns {
	t.Helper()
	n, err := cnitest.NewNetns("mcni-podns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Delete)
	return n
}

func newPod(t *testing.T, uid string, d cnitest.CgroupDriver) *cnitest.PodProcs {
	t.Helper()
	p, err := cnitest.NewPodProcs(uid, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func start(t *testing.T, p *cnitest.PodProcs, ctr, netns string) int {
	t.Helper()
	cmd, err := p.Start(ctr, netns)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return statIno(st)
}

func TestOpenRealPod(t *testing.T) {
	needRoot(t)
	for _, d := range []cnitest.CgroupDriver{cnitest.Cgroupfs, cnitest.Systemd} {
		t.Run(string(d), func(t *testing.T) {
			n := newNetns(t)
			p := newPod(t, uid, d)
			pause := start(t, p, "pause", n.Path())
			start(t, p, "app", n.Path())
			h, err := Open("/proc", uid)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if h.PID != pause || h.Procs != 2 {
				t.Fatalf("Open chose process %d of %d, want the pause process %d of 2", h.PID, h.Procs, pause)
			}
			if got, want := inodeOf(t, h.Path()), inodeOf(t, n.Path()); got != want {
				t.Fatalf("handle's netns %d, the pod's %d", got, want)
			}
			if err := h.StillPod(); err != nil {
				t.Fatal(err)
			}
			// The pod goes away: the handle still names its (orphaned)
			// netns, and StillPod says the pod is gone.
			p.Close()
			if got, want := inodeOf(t, h.Path()), inodeOf(t, n.Path()); got != want {
				t.Fatalf("after the pod exited the handle names netns %d, want %d", got, want)
			}
			if err := h.StillPod(); !errors.Is(err, ErrNoProcess) {
				t.Fatalf("StillPod after the pod exited: %v, want ErrNoProcess", err)
			}
		})
	}
}

func TestOpenRealRefuses(t *testing.T) {
	needRoot(t)
	t.Run("hostNetwork", func(t *testing.T) {
		p := newPod(t, uid, cnitest.Cgroupfs)
		start(t, p, "app", "")
		if _, err := Open("/proc", uid); !errors.Is(err, ErrHostNetwork) {
			t.Fatalf("Open: %v, want ErrHostNetwork", err)
		}
	})
	t.Run("two netns", func(t *testing.T) {
		p := newPod(t, uid, cnitest.Systemd)
		start(t, p, "a", newNetns(t).Path())
		start(t, p, "b", newNetns(t).Path())
		if _, err := Open("/proc", uid); !errors.Is(err, ErrAmbiguous) {
			t.Fatalf("Open: %v, want ErrAmbiguous", err)
		}
	})
	t.Run("not running", func(t *testing.T) {
		newPod(t, uid, cnitest.Cgroupfs) // a cgroup without processes
		if _, err := Open("/proc", uid); !errors.Is(err, ErrNoProcess) {
			t.Fatalf("Open: %v, want ErrNoProcess", err)
		}
	})
}

// TestOpenRealChurn: processes of the pod start and exit while it is
// scanned (a container restarting, an exec'd probe); every scan finds the
// pod's netns or, never, another.
func TestOpenRealChurn(t *testing.T) {
	needRoot(t)
	n := newNetns(t)
	p := newPod(t, uid, cnitest.Cgroupfs)
	start(t, p, "pause", n.Path())
	other := newPod(t, otherUID, cnitest.Cgroupfs)
	start(t, other, "app", newNetns(t).Path())
	want := inodeOf(t, n.Path())

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		churn, err := cnitest.NewPodProcs(uid, cnitest.Systemd) // same pod, other hierarchy
		if err != nil {
			t.Error(err)
			return
		}
		defer churn.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cmd, err := churn.Start("probe"+string(rune('a'+i%26))+string(rune('a'+i/26%26)), n.Path())
			if err != nil {
				t.Error(err)
				return
			}
			cnitest.Stop(cmd)
		}
	}()
	for range 100 {
		h, err := Open("/proc", uid)
		if err != nil {
			t.Error(err)
			break
		}
		if h.Inode != want {
			t.Errorf("found netns %d, want %d", h.Inode, want)
		}
		h.Close()
	}
	close(stop)
	wg.Wait()
}

// TestOpenRealNeedsPtrace: the pod's process runs as another user (a pause
// process's 65535). Without CAP_SYS_PTRACE the agent cannot read its
// netns: an error naming the capability, never "no process" or a skip;
// with it (and nothing else) the netns is found. The scan runs in this
// test binary re-executed under setpriv with the capabilities chosen.
func TestOpenRealNeedsPtrace(t *testing.T) {
	needRoot(t)
	if os.Getenv(helperEnv) != "" {
		t.Skip("helper")
	}
	n := newNetns(t)
	p := newPod(t, uid, cnitest.Cgroupfs)
	if _, err := p.StartAs("pause", n.Path(), 65535); err != nil {
		t.Fatal(err)
	}
	scan := func(caps string) (string, error) {
		cmd := exec.Command("setpriv", "--bounding-set=-all"+caps, "--inh-caps=-all", os.Args[0], "-test.run=^TestHelperOpen$", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"="+uid)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := scan(",+net_admin,+sys_admin")
	if err == nil || !strings.Contains(out, "CAP_SYS_PTRACE") {
		t.Fatalf("without CAP_SYS_PTRACE: %v\n%s", err, out)
	}
	if out, err := scan(",+sys_ptrace"); err != nil || !strings.Contains(out, "found netns") {
		t.Fatalf("with CAP_SYS_PTRACE: %v\n%s", err, out)
	}
}

const helperEnv = "PODNETNS_HELPER_UID"

// TestHelperOpen is TestOpenRealNeedsPtrace's scanner; it only runs there.
func TestHelperOpen(t *testing.T) {
	u := os.Getenv(helperEnv)
	if u == "" {
		t.Skip("run by TestOpenRealNeedsPtrace")
	}
	h, err := Open("/proc", u)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	t.Logf("found netns %d of process %d", h.Inode, h.PID)
}
