package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// socketListener owns the socket file: it removes it on close only while
// the path is still its own socket (during a rolling update the next agent
// may already listen there).
type socketListener struct {
	*net.UnixListener
	path     string
	dev, ino uint64
}

// listen prepares the directory (0700, so only root reaches the socket) and
// replaces a leftover socket file: a crashed agent's, or a live older
// agent's during a rolling update (it keeps serving its open connections
// and exits; new plug-ins reach this one). A path that is not a socket is
// never removed.
func listen(path string, log *slog.Logger) (*socketListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent socket dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent socket dir %s: %w", dir, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("agent socket %s exists and is not a socket (%s); not removing it", path, fi.Mode().Type())
		}
		state := "stale (nobody listens)"
		if c, err := net.DialTimeout("unix", path, 100*time.Millisecond); err == nil {
			c.Close()
			state = "held by a live agent, taking over"
		}
		log.Info("replacing existing agent socket", "socket", path, "state", state)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("agent socket %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	sl := &socketListener{UnixListener: ln, path: path}
	if fi, err := os.Lstat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			sl.dev, sl.ino = st.Dev, st.Ino
		}
	}
	return sl, nil
}

// Close stops listening and removes the file if it is still ours.
func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	if fi, serr := os.Lstat(l.path); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Dev == l.dev && st.Ino == l.ino {
			_ = os.Remove(l.path)
		}
	}
	return err
}
