package podnetns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	uid      = "0f5c9d2e-7a41-4b3c-9e8f-1a2b3c4d5e6f"
	otherUID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
)

// fakeProc is a /proc-shaped tree: every process's ns/net is a symlink to
// one file per netns, so processes of one netns share an inode as the
// real nsfs links do.
type fakeProc struct {
	t    *testing.T
	root string
}

func newFakeProc(t *testing.T) *fakeProc {
	f := &fakeProc{t: t, root: t.TempDir()}
	f.proc(1, "host", "0::/init.scope\n", 1)
	must(t, os.Symlink("1", filepath.Join(f.root, "thread-self")))
	return f
}

// proc adds a process in netns ns with the given /proc/PID/cgroup text and
// start time.
func (f *fakeProc) proc(pid int, ns, cgroup string, start int) {
	f.t.Helper()
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	nsFile := filepath.Join(f.root, "netns-"+ns)
	if _, err := os.Stat(nsFile); err != nil {
		must(f.t, os.WriteFile(nsFile, nil, 0o644))
	}
	must(f.t, os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
	must(f.t, os.Symlink(nsFile, filepath.Join(dir, "ns", "net")))
	must(f.t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644))
	// The command name holds ") " to prove fields are counted from the last ')'.
	stat := fmt.Sprintf("%d (odd) name) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, start)
	must(f.t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
}

func (f *fakeProc) inode(ns string) uint64 {
	f.t.Helper()
	st, err := os.Stat(filepath.Join(f.root, "netns-"+ns))
	must(f.t, err)
	return statIno(st)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Cgroup files as kubelets with each driver and cgroup version write them.
var (
	v1Cgroupfs = "12:pids:/kubepods/besteffort/pod" + uid + "/4c1d\n11:memory:/kubepods/besteffort/pod" + uid + "/4c1d\n0::/\n"
	v2Systemd  = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f5c9d2e_7a41_4b3c_9e8f_1a2b3c4d5e6f.slice/cri-containerd-4c1d.scope\n"
	v2Cgroupfs = "0::/kubepods/pod" + uid + "/9e9e\n"
	otherPod   = "0::/kubepods/pod" + otherUID + "/1111\n"
)

func TestFindSpellings(t *testing.T) {
	for name, cg := range map[string]string{"v1 cgroupfs": v1Cgroupfs, "v2 systemd": v2Systemd, "v2 cgroupfs": v2Cgroupfs} {
		t.Run(name, func(t *testing.T) {
			f := newFakeProc(t)
			f.proc(200, "other", otherPod, 50)
			f.proc(300, "pod", cg, 90) // the app, started later
			f.proc(301, "pod", cg, 80) // the pause process: oldest
			f.proc(302, "pod", cg, 95)
			got, err := Find(f.root, uid)
			if err != nil {
				t.Fatal(err)
			}
			want := Found{PID: 301, Inode: f.inode("pod"), Procs: 3}
			if got != want {
				t.Fatalf("Find = %+v, want %+v", got, want)
			}
		})
	}
}

func TestFindRefuses(t *testing.T) {
	cases := map[string]struct {
		uid   string
		setup func(f *fakeProc)
		want  error
	}{
		"no process":  {uid, func(f *fakeProc) { f.proc(200, "other", otherPod, 5) }, ErrNoProcess},
		"hostNetwork": {uid, func(f *fakeProc) { f.proc(300, "host", v2Cgroupfs, 5) }, ErrHostNetwork},
		"two netns":   {uid, func(f *fakeProc) { f.proc(300, "a", v2Cgroupfs, 5); f.proc(301, "b", v2Cgroupfs, 6) }, ErrAmbiguous},
		"empty UID":   {"", func(f *fakeProc) { f.proc(300, "a", v2Cgroupfs, 5) }, ErrBadUID},
		"path UID":    {"../../x/y", func(f *fakeProc) { f.proc(300, "a", v2Cgroupfs, 5) }, ErrBadUID},
		"short UID":   {"0f5c", func(f *fakeProc) { f.proc(300, "a", v2Cgroupfs, 5) }, ErrBadUID},
		"dashes UID":  {"------------------------------------", func(f *fakeProc) { f.proc(300, "a", "0::/a"+strings.Repeat("-", 40)+"\n", 5) }, ErrBadUID},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFakeProc(t)
			c.setup(f)
			_, err := Find(f.root, c.uid)
			if !errors.Is(err, c.want) {
				t.Fatalf("Find: %v, want %v", err, c.want)
			}
		})
	}
}

// TestFindSkipsVanished: processes that exit mid-scan are skipped.
func TestFindSkipsVanished(t *testing.T) {
	f := newFakeProc(t)
	f.proc(300, "pod", v2Cgroupfs, 5)
	// Processes that exit mid-scan leave half a directory: no cgroup file,
	// a dangling ns link, no stat.
	f.proc(301, "pod", v2Cgroupfs, 4)
	must(t, os.Remove(filepath.Join(f.root, "301", "stat")))
	f.proc(302, "gone", v2Cgroupfs, 3)
	must(t, os.Remove(filepath.Join(f.root, "netns-gone")))
	must(t, os.MkdirAll(filepath.Join(f.root, "303"), 0o755))
	got, err := Find(f.root, uid)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 300 || got.Procs != 1 {
		t.Fatalf("Find = %+v, want only process 300", got)
	}
}

// TestFindStarting: a process of the pod still in the host's netns (a
// container being started: runc joins the cgroup and the netns in steps)
// does not make the pod ambiguous or hostNetwork.
func TestFindStarting(t *testing.T) {
	f := newFakeProc(t)
	f.proc(300, "pod", v2Cgroupfs, 5)
	f.proc(301, "host", v2Cgroupfs, 2)
	got, err := Find(f.root, uid)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 300 || got.Inode != f.inode("pod") {
		t.Fatalf("Find = %+v, want process 300 in the pod's netns", got)
	}
}

func TestFindNoHost(t *testing.T) {
	f := newFakeProc(t)
	must(t, os.RemoveAll(filepath.Join(f.root, "1")))
	f.proc(300, "pod", v2Cgroupfs, 5)
	if _, err := Find(f.root, uid); err == nil {
		t.Fatal("Find without /proc/1: no error")
	}
}
