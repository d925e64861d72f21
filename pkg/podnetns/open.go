package podnetns

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Handle is an open pod netns. While it is open its Path names that netns
// and nothing else: a /proc/PID/ns/net path would name another process's
// netns once the PID is reused, the fd cannot.
type Handle struct {
	f *os.File
	// Found is the scan the handle was opened from.
	Found
	procRoot, uid string
}

// Open finds the pod's netns (Find) and opens it. The opened file must be
// a network namespace with the inode the scan agreed on, so a process
// that exited and whose PID was reused between scan and open is refused.
func Open(procRoot, uid string) (*Handle, error) {
	found, err := Find(procRoot, uid)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(procRoot, strconv.Itoa(found.PID), "ns", "net")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("opening the netns of pod UID %s (%s): %w", uid, p, err)
	}
	h := &Handle{f: f, Found: found, procRoot: procRoot, uid: uid}
	if err := h.check(); err != nil {
		f.Close()
		return nil, fmt.Errorf("opening the netns of pod UID %s (%s): %w", uid, p, err)
	}
	return h, nil
}

// check: the open file is a netns (nsfs, type NET) with the scan's inode.
func (h *Handle) check() error {
	var st unix.Stat_t
	if err := unix.Fstat(int(h.f.Fd()), &st); err != nil {
		return err
	}
	if st.Ino != h.Inode {
		return fmt.Errorf("process %d changed netns or exited while it was opened (inode %d, want %d)", h.PID, st.Ino, h.Inode)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(h.f.Fd()), &sfs); err != nil {
		return err
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s is not a namespace file", h.f.Name())
	}
	typ, err := unix.IoctlRetInt(int(h.f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("NS_GET_NSTYPE: %w", err)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is a namespace of another type (clone flag %#x)", h.f.Name(), typ)
	}
	return nil
}

// Path names the open netns for as long as the handle is open, for this
// process only (setns, flock and the iptables tools started from it).
func (h *Handle) Path() string {
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), h.f.Fd())
}

// HostPath is where the host sees the netns while the pod's chosen
// process lives: for records and operators, not for programming.
func (h *Handle) HostPath() string {
	return fmt.Sprintf("/proc/%d/ns/net", h.PID)
}

// StillPod re-scans and fails unless the pod's processes still share the
// handle's netns: a pod that went away (or was recreated) during a repair
// must not be recorded as repaired.
func (h *Handle) StillPod() error {
	found, err := Find(h.procRoot, h.uid)
	if err != nil {
		return fmt.Errorf("the pod went away: %w", err)
	}
	if found.Inode != h.Inode {
		return fmt.Errorf("the pod's netns changed (inode %d, was %d)", found.Inode, h.Inode)
	}
	return nil
}

// Close releases the netns.
func (h *Handle) Close() error { return h.f.Close() }
