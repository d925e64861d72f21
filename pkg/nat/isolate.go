package nat

import (
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// filesOnlyNSS makes getpwnam/getgrnam read /etc/passwd and /etc/group and
// nothing else. iptables looks up "--uid-owner 1337" as a user name before it
// tries it as a number; on nodes whose NSS goes to sssd, LDAP or systemd's
// userdb that lookup has stalled pod starts for tens of seconds.
const filesOnlyNSS = "passwd: files\ngroup: files\nshadow: files\n"

// inNetns runs fn on a dedicated OS thread that has entered the netns at
// path and, best effort, a private mount namespace in which
// /etc/nsswitch.conf says "files". Commands fn starts inherit both. The
// thread is never handed back to the Go scheduler (the goroutine exits
// locked, so the runtime discards it): no other goroutine can ever run in
// the pod's namespaces by accident.
func inNetns(path string, fn func(isolateErr error) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, on purpose
		target, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("opening netns %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("entering netns %s: %w", path, err)
			return
		}
		errc <- fn(isolateNSS())
	}()
	return <-errc
}

// isolateNSS gives the calling thread its own mount namespace with a
// files-only nsswitch.conf bind-mounted over the host's.
func isolateNSS() error {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	// Our mounts must not propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	// The source must live in a mount we can see; a temp file that is
	// unlinked at once leaves nothing behind, the mount keeps the inode.
	f, err := os.CreateTemp("", "mesh-cni-nsswitch-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.WriteString(filesOnlyNSS); err != nil {
		return err
	}
	if err := unix.Mount(f.Name(), "/etc/nsswitch.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting nsswitch.conf: %w", err)
	}
	// glibc asks nscd before it reads nsswitch.conf; hide its socket too.
	if _, err := os.Stat("/var/run/nscd"); err == nil {
		_ = unix.Mount("tmpfs", "/var/run/nscd", "tmpfs", 0, "size=4k")
	}
	return nil
}
