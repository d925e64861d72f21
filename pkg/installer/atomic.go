package installer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// WriteFileAtomic replaces path with data so that readers see either the old
// or the new content, never a mix: a temp file in the same directory is
// written, fsynced, given mode (and, when keepFrom exists, its mode and
// owner win), then renamed over path, and the directory is fsynced.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode, keepFrom string) error {
	return writeAtomic(path, mode, keepFrom, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, nil)
}

// commitFunc moves the complete temp file tmp to path. From its call on it
// owns tmp: it removes it or leaves it on purpose.
type commitFunc func(tmp, path string) error

func renameCommit(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func writeAtomic(path string, mode fs.FileMode, keepFrom string, fill func(io.Writer) error, commit commitFunc) (err error) {
	if commit == nil {
		commit = renameCommit
	}
	dir := filepath.Dir(path)
	uid, gid := -1, -1
	if keepFrom != "" {
		if st, serr := os.Stat(keepFrom); serr == nil {
			mode = st.Mode().Perm()
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(sys.Uid), int(sys.Gid)
			}
		}
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	committing := false
	defer func() {
		if err != nil && !committing {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = fill(tmp); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 && (uid != os.Geteuid() || gid != os.Getegid()) {
		// Best effort: keeping a foreign owner needs CAP_CHOWN, which the
		// DaemonSet drops; runtimes read the file as root either way.
		_ = tmp.Chown(uid, gid)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	committing = true
	if err = commit(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// RemoveStaleTemps deletes temp files of interrupted atomic writes in dir
// that are older than minAge (a younger one may belong to another instance
// writing right now). It returns the names removed.
func RemoveStaleTemps(dir string, minAge time.Duration) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) || e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < minAge {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			removed = append(removed, e.Name())
		}
	}
	return removed, nil
}

// sameContent reports whether path holds exactly data.
func sameContent(path string, data []byte) bool {
	cur, err := os.ReadFile(path)
	return err == nil && bytes.Equal(cur, data)
}
