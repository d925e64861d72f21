// Package podnetns finds a running pod's network namespace from the host's
// /proc: the processes whose cgroup path names the pod's UID, and the one
// netns they all share. The node agent needs it (with hostPID) to program
// a pod that started before mesh-cni was in the chain, where no runtime
// hands it a CNI_NETNS.
package podnetns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Errors a caller can tell apart (all wrapped with the details).
var (
	// ErrNoProcess: no live process of the pod is visible (not on this
	// node, not started yet, already gone, or no hostPID).
	ErrNoProcess = errors.New("no process of the pod found")
	// ErrHostNetwork: the pod's processes are in the host's netns.
	ErrHostNetwork = errors.New("the pod runs in the host's network namespace (hostNetwork)")
	// ErrAmbiguous: the pod's processes are in more than one netns.
	ErrAmbiguous = errors.New("the pod's processes are in different network namespaces")
	// ErrBadUID: the UID cannot safely be matched against cgroup paths.
	ErrBadUID = errors.New("invalid pod UID")
	// ErrPermission: a process of the pod could not be looked at; opening
	// another user's (or a more privileged process's) /proc/PID/ns/net
	// needs CAP_SYS_PTRACE.
	ErrPermission = errors.New("not allowed to read the netns of the pod's processes (the agent needs CAP_SYS_PTRACE)")
)

// Found is the result of a scan.
type Found struct {
	// PID is the pod's longest-running process (its sandbox's pause
	// process as a rule): the one most likely to outlive the repair.
	PID int
	// Inode identifies the netns every process of the pod shares.
	Inode uint64
	// Procs is how many processes of the pod were seen.
	Procs int
}

// Find scans procRoot (the host's /proc, or a test's tree of the same
// shape) for the processes of the pod with this UID and returns the netns
// they share. A process that exits during the scan is skipped; so is one
// in the host's netns while others of the pod share a netns of their own.
func Find(procRoot, uid string) (Found, error) {
	needles, err := needles(uid)
	if err != nil {
		return Found{}, err
	}
	host, err := hostInodes(procRoot)
	if err != nil {
		return Found{}, err
	}
	pids, err := listPIDs(procRoot)
	if err != nil {
		return Found{}, err
	}
	var f Found
	var first uint64 // start time of f.PID
	seen := map[uint64][]int{}
	var onHost, denied []int
	for _, pid := range pids {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		in, err := inPod(dir, needles)
		if err != nil || !in {
			continue // gone or unreadable: skipped
		}
		ino, err := nsInode(dir)
		if errors.Is(err, fs.ErrPermission) {
			denied = append(denied, pid)
			continue
		}
		if err != nil {
			continue
		}
		start, err := startTime(dir)
		if err != nil {
			continue
		}
		if slices.Contains(host, ino) {
			// A process being started in the pod (runc's init joins the
			// cgroup and the namespaces in separate steps), or a
			// hostNetwork pod: it decides nothing unless it is all there is.
			onHost = append(onHost, pid)
			continue
		}
		seen[ino] = append(seen[ino], pid)
		f.Procs++
		if f.PID == 0 || start < first || start == first && pid < f.PID {
			f.PID, f.Inode, first = pid, ino, start
		}
	}
	switch {
	case len(denied) > 0:
		// Fail closed: an unreadable process could be in another netns.
		return Found{}, fmt.Errorf("%w: processes %v", ErrPermission, denied)
	case f.Procs == 0 && len(onHost) > 0:
		return Found{}, fmt.Errorf("%w: processes %v share the host's netns", ErrHostNetwork, onHost)
	case f.Procs == 0:
		return Found{}, fmt.Errorf("%w: no process under %s has a cgroup naming pod UID %s", ErrNoProcess, procRoot, uid)
	case len(seen) > 1:
		return Found{}, fmt.Errorf("%w: %s", ErrAmbiguous, describe(seen))
	}
	return f, nil
}

// hostInodes are the netns a pod must not share: init's (PID 1, the
// host's with hostPID) and the caller's own (the host's too when the agent
// runs with hostNetwork; otherwise the agent's pod, not one to repair).
// Reading init's needs the right to ptrace it, which some sandboxes deny
// even to root; the caller's own is then the reference. The caller's is
// its thread's, not /proc/self's: a Go process whose main thread was
// locked into a pod's netns (nat's setns threads may land on it, and it is
// then parked there for good) would otherwise take that pod for the host.
func hostInodes(procRoot string) ([]uint64, error) {
	var inos []uint64
	var errs []error
	for _, p := range []string{"1", "thread-self"} {
		ino, err := nsInode(filepath.Join(procRoot, p))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		inos = append(inos, ino)
	}
	if len(inos) == 0 {
		return nil, fmt.Errorf("reading the host's netns (%s/1/ns/net and %s/thread-self/ns/net; does the agent run with hostPID?): %w",
			procRoot, procRoot, errors.Join(errs...))
	}
	return inos, nil
}

// needles are the spellings of uid in cgroup paths: as is (cgroupfs
// driver: .../pod<uid>/...) and with '_' for '-' (systemd driver:
// kubepods-burstable-pod<uid_with_underscores>.slice). Only a UUID (what
// the API server assigns) is accepted, so an empty, short or odd UID
// cannot match other pods' paths.
func needles(uid string) ([]string, error) {
	if !isUUID(uid) {
		return nil, fmt.Errorf("%w %q: want a UUID (8-4-4-4-12 hex digits)", ErrBadUID, uid)
	}
	return []string{uid, strings.ReplaceAll(uid, "-", "_")}, nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// inPod says whether any cgroup line of the process (v1: one per
// hierarchy, v2: "0::/path") has a path naming the pod.
func inPod(dir string, needles []string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		// hierarchy-ID:controllers:path; the path may itself hold ':'.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, n := range needles {
			if strings.Contains(parts[2], n) {
				return true, nil
			}
		}
	}
	return false, nil
}

// nsInode is the inode of dir/ns/net: equal inodes, same netns.
func nsInode(dir string) (uint64, error) {
	st, err := os.Stat(filepath.Join(dir, "ns", "net"))
	if err != nil {
		return 0, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s/ns/net: no inode", dir)
	}
	return sys.Ino, nil
}

// startTime is field 22 of /proc/PID/stat (clock ticks since boot). The
// command name (field 2) may contain spaces and ')', so fields are
// counted from the last ')'.
func startTime(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s/stat: no ')'", dir)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("%s/stat: %d fields", dir, len(fields)+2)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

func listPIDs(procRoot string) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", procRoot, err)
	}
	var pids []int
	for _, e := range entries {
		if e.Type()&fs.ModeType != 0 && !e.IsDir() {
			continue
		}
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func describe(seen map[uint64][]int) string {
	var parts []string
	for ino, pids := range seen {
		parts = append(parts, fmt.Sprintf("netns %d: processes %v", ino, pids))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

func statIno(st os.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}
