package cnitest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CgroupDriver is how a kubelet names a pod's cgroup.
type CgroupDriver string

const (
	// Cgroupfs: .../kubepods/besteffort/pod<uid>/<container>, in the
	// cgroup v1 pids hierarchy.
	Cgroupfs CgroupDriver = "cgroupfs"
	// Systemd: .../kubepods-besteffort-pod<uid with '_'>.slice/<container>,
	// in the cgroup v2 hierarchy.
	Systemd CgroupDriver = "systemd"
)

// PodProcs are processes standing in for a running pod's containers: each
// in a cgroup whose path names the pod UID as the kubelet's driver would,
// and in the netns it was started in. Close stops them and removes the
// cgroup directories.
type PodProcs struct {
	UID    string
	dirs   []string // created, removed deepest first
	procs  []*exec.Cmd
	driver CgroupDriver
}

// cgroupRoot is where the test makes its cgroups for the driver.
func cgroupRoot(d CgroupDriver) (string, error) {
	var candidates []string
	if d == Systemd {
		candidates = []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}
	} else {
		candidates = []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"}
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "cgroup.procs")); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("no writable cgroup hierarchy for %s", d)
}

// NewPodProcs makes the pod's cgroup directory (a test prefix keeps it
// apart from the host's own).
func NewPodProcs(uid string, d CgroupDriver) (*PodProcs, error) {
	if len(uid) < 8 {
		return nil, fmt.Errorf("uid %q: too short", uid)
	}
	root, err := cgroupRoot(d)
	if err != nil {
		return nil, err
	}
	p := &PodProcs{UID: uid, driver: d}
	var parts []string
	if d == Systemd {
		parts = []string{"mesh-cni-test-" + uid[:8] + ".slice", "mesh-cni-test-kubepods-besteffort-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"}
	} else {
		parts = []string{"mesh-cni-test-" + uid[:8], "kubepods", "besteffort", "pod" + uid}
	}
	dir := root
	for _, part := range parts {
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil {
			p.Close()
			return nil, err
		}
		p.dirs = append(p.dirs, dir)
	}
	return p, nil
}

// podDir is the pod's cgroup.
func (p *PodProcs) podDir() string { return p.dirs[len(p.dirs)-1] }

// Start runs "sleep" as one container of the pod: in its own container
// cgroup under the pod's, in the netns at netnsPath ("" = the caller's).
// It returns once the process is in both.
func (p *PodProcs) Start(container, netnsPath string) (*exec.Cmd, error) {
	return p.StartAs(container, netnsPath, 0)
}

// StartAs is Start with the sleeper running as uid:uid with no
// capabilities (a pause process runs as 65535), when uid is not 0.
func (p *PodProcs) StartAs(container, netnsPath string, uid int) (*exec.Cmd, error) {
	dir := filepath.Join(p.podDir(), container)
	if p.driver == Systemd {
		dir = filepath.Join(p.podDir(), "cri-containerd-"+container+".scope")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	p.dirs = append(p.dirs, dir)
	// The shell joins the cgroup before it becomes the sleeper: the
	// process is never seen outside it.
	args := []string{"-c", `d="$1"; shift; echo $$ > "$d/cgroup.procs" && exec "$@"`, "sh", dir}
	if netnsPath != "" {
		args = append(args, "nsenter", "--net="+netnsPath, "--")
	}
	if uid != 0 {
		args = append(args, "setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups",
			"--inh-caps=-all", "--bounding-set=-all")
	}
	cmd := exec.Command("sh", append(args, "sleep", "3600")...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.procs = append(p.procs, cmd)
	return cmd, waitJoined(cmd.Process.Pid, netnsPath)
}

// waitJoined waits until pid runs sleep (so nsenter has entered the netns).
func waitJoined(pid int, netnsPath string) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "sleep" {
			if netnsPath == "" || sameFile(netnsPath, fmt.Sprintf("/proc/%d/ns/net", pid)) {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("process %d did not become the pod's sleeper", pid)
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// Stop kills one of the pod's processes and reaps it.
func Stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// Close stops every process and removes the cgroup directories.
func (p *PodProcs) Close() {
	for _, c := range p.procs {
		Stop(c)
	}
	for i := len(p.dirs) - 1; i >= 0; i-- {
		// A cgroup is removable once its last process has been reaped.
		for range 100 {
			if err := os.Remove(p.dirs[i]); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
