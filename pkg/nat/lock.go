package nat

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Lock implements redirect.Locker with flock(2) on the netns file itself.
// Every path to one netns — the runtime's bind mount, /proc/PID/ns/net —
// is the same nsfs inode, so every mesh-cni process working on that netns
// meets on the same lock, and nothing is left on disk. The kernel drops
// the lock when the process dies, SIGKILL included. The wait is bounded
// by LockWait.
//
// Lock nests: a caller may hold it around a whole CNI verb (every family
// and the rollback) and still call Apply, which locks again; only the
// outermost unlock releases it. A Netns is for one goroutine at a time.
func (n *Netns) Lock() (func(), error) {
	if n.lockDepth > 0 {
		n.lockDepth++
		return n.unlock, nil
	}
	f, err := os.Open(n.Path)
	if err != nil {
		return nil, fmt.Errorf("locking netns %s: %w", n.Path, err)
	}
	deadline := time.Now().Add(n.LockWait)
	pause := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			n.lockFile, n.lockDepth = f, 1
			return n.unlock, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking netns %s: %w", n.Path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("netns %s: another mesh-cni process has been working on it for over %s (a retried ADD?); gave up waiting: %w",
				n.Path, n.LockWait, errNetnsBusy)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

var errNetnsBusy = errors.New("netns locked")

func (n *Netns) unlock() {
	if n.lockDepth--; n.lockDepth == 0 {
		n.lockFile.Close() // closing the file releases the lock
		n.lockFile = nil
	}
}
