package plugin

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// errNotNetns: CNI_NETNS exists but is not a network namespace.
var errNotNetns = errors.New("not a network namespace")

// checkNetns returns nil when path is a network namespace the plug-in can
// enter: an nsfs inode (a bind mount under /run/netns, or a
// /proc/PID/ns/net link) whose namespace type is NET. Otherwise it says
// what the path is: gone, or still there but not a netns (the file left
// behind when the bind mount was unmounted, a directory, another
// namespace type). Opening never blocks: O_NONBLOCK for a FIFO planted
// there, and only regular files (which nsfs inodes are) are opened at all.
func checkNetns(path string) error {
	if path == "" {
		return errors.New("empty path")
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: it is a %s", errNotNetns, fileKind(st.Mode()))
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if fs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%w: a plain file (was its bind mount unmounted?)", errNotNetns)
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("%w: NS_GET_NSTYPE: %w", errNotNetns, err)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("%w: a namespace of another type (clone flag %#x)", errNotNetns, typ)
	}
	return nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeSymlink != 0:
		return "symlink"
	case m&os.ModeNamedPipe != 0:
		return "FIFO"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
