package installer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A config file belongs to the primary CNI, which may rewrite it at any
// moment, also between our read and our write. Writing a merge of what we
// read over what it wrote since would silently revert its change (a new
// pod CIDR, a new plug-in) for good: the event of its write then finds our
// content and looks like our own. So every write over a config file is
// guarded by what the plan was computed from, and a guard that no longer
// holds makes the write give way (errChanged): the caller reads again and
// merges the newer content.

// errChanged says a config file no longer holds what the plan was computed
// from; nothing was changed.
var errChanged = errors.New("changed by another writer since it was read")

// maxRestoreSwaps bounds the exchanges that put a concurrent writer's
// content back (each one is needed only if it wrote again meanwhile).
const maxRestoreSwaps = 100

// guard is what a file must hold for a write over it (or its removal) to go
// ahead: nothing (absent) or exactly data.
type guard struct {
	absent bool
	data   []byte
}

// guardFor is the guard of name in the directory content files.
func guardFor(files []DirFile, name string) guard {
	if !hasFile(files, name) {
		return guard{absent: true}
	}
	return guard{data: fileData(files, name)}
}

// holds reports whether path satisfies g right now.
func (g guard) holds(path string) bool {
	cur, err := os.ReadFile(path)
	if g.absent {
		_, lerr := os.Lstat(path)
		return errors.Is(lerr, fs.ErrNotExist)
	}
	return err == nil && bytes.Equal(cur, g.data)
}

// commitGuarded moves the fully written temp file tmp to path if path still
// satisfies g, and never leaves content someone wrote after our read
// replaced: an existing file is swapped with RENAME_EXCHANGE, so what it
// held comes back to tmp and is checked; a write that slipped in between the
// check and the swap is put back. A file that must be absent is created
// with RENAME_NOREPLACE. ours is tmp's content.
func commitGuarded(tmp, path string, ours []byte, g guard, beforeRename func()) error {
	if !g.holds(path) {
		_ = os.Remove(tmp)
		return errChanged
	}
	if beforeRename != nil {
		beforeRename()
	}
	if g.absent {
		return createNoReplace(tmp, path)
	}
	err := exchange(tmp, path)
	switch {
	case unsupported(err):
		// No RENAME_EXCHANGE on this filesystem: the check above leaves
		// only the instant of this rename open.
		return renameCommit(tmp, path)
	case errors.Is(err, fs.ErrNotExist):
		_ = os.Remove(tmp)
		return errChanged // removed since the check
	case err != nil:
		_ = os.Remove(tmp)
		return err
	}
	displaced, err := os.ReadFile(tmp)
	if err == nil && bytes.Equal(displaced, g.data) {
		return os.Remove(tmp)
	}
	if err != nil {
		displaced = nil
	}
	return restore(tmp, path, ours, displaced)
}

// restore undoes an exchange that displaced newer foreign content (now in
// tmp) with ours (now at path). Each exchange brings back what path held; if
// that is what we put there, no one wrote meanwhile and path holds the
// newest foreign content. Otherwise the newcomer is newer still and goes
// back in the same way.
func restore(tmp, path string, atPath, inTmp []byte) error {
	for i := 0; i < maxRestoreSwaps; i++ {
		if err := exchange(tmp, path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// The other writer removed the file since: its latest
				// intent is no file, so what we displaced goes too.
				_ = os.Remove(tmp)
				return errChanged
			}
			return fmt.Errorf("put back %s after a concurrent write: %w (its newer content is in %s)", path, err, tmp)
		}
		got, err := os.ReadFile(tmp)
		if err != nil {
			return fmt.Errorf("put back %s after a concurrent write: %w", path, err)
		}
		if bytes.Equal(got, atPath) {
			_ = os.Remove(tmp)
			return errChanged
		}
		atPath, inTmp = inTmp, got
	}
	return fmt.Errorf("%s: a concurrent writer kept replacing it; its content last seen is in %s", path, tmp)
}

// createNoReplace moves tmp to path unless path exists (then errChanged).
func createNoReplace(tmp, path string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		_ = os.Remove(tmp)
		return errChanged
	case !unsupported(err):
		return err // tmp stays for the stale-temp sweep: it may be all that holds someone's content
	}
	// A hard link fails atomically on an existing name on any filesystem.
	if err := os.Link(tmp, path); err != nil {
		_ = os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return errChanged
		}
		return err
	}
	return os.Remove(tmp)
}

func exchange(a, b string) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
}

func unsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}

// removeGuarded removes path if it still holds g.data. The file is first
// renamed aside (atomic), then checked: content written after our read is
// put back (unless a newer file took the name meanwhile) and errChanged
// returned.
func removeGuarded(path string, g guard) error {
	if g.absent {
		return nil
	}
	if !g.holds(path) {
		return errChanged
	}
	aside, err := reserveTemp(filepath.Dir(path))
	if err != nil {
		return err
	}
	if err := os.Rename(path, aside); err != nil {
		_ = os.Remove(aside)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // already gone
		}
		return err
	}
	got, err := os.ReadFile(aside)
	if err == nil && bytes.Equal(got, g.data) {
		if err := os.Remove(aside); err != nil {
			return err
		}
		return syncDir(filepath.Dir(path))
	}
	if err := createNoReplace(aside, path); err != nil && !errors.Is(err, errChanged) {
		return fmt.Errorf("put back %s after a concurrent write: %w (its content is in %s)", path, err, aside)
	}
	return errChanged
}

// reserveTemp creates an empty temp file in dir and returns its name.
func reserveTemp(dir string) (string, error) {
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		_ = os.Remove(name)
		return "", err
	}
	return name, nil
}

// commitPath is where a write to name in dir goes: for a symlink, the file
// it resolves to (the temp file is made beside it, so the rename stays
// atomic), so a link another tool manages stays a link.
func commitPath(dir string, files []DirFile, name string) string {
	for _, f := range files {
		if f.Name == name && f.Link {
			return f.Real
		}
	}
	return filepath.Join(dir, name)
}
