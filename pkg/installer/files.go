package installer

import (
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// readNetDir reads every file a runtime would consider (libcni.ConfFiles with
// the runtime's extensions), sorted, with their modification times. Files
// that vanish or cannot be read between listing and reading are left out.
// A symlink counts as the file it resolves to (runtimes follow it too).
func readNetDir(dir string) ([]DirFile, map[string]time.Time, error) {
	paths, err := libcni.ConfFiles(dir, ConfExtensions)
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(paths)
	files := make([]DirFile, 0, len(paths))
	mtimes := make(map[string]time.Time, len(paths))
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := DirFile{Name: filepath.Base(p), Data: data, Real: p}
		if lst, err := os.Lstat(p); err == nil && lst.Mode()&fs.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				continue // replaced meanwhile; the next pass sees it
			}
			f.Real, f.Link = real, true
		}
		files = append(files, f)
		mtimes[f.Name] = st.ModTime()
	}
	return files, mtimes, nil
}

// fileStamp identifies a file version cheaply (without reading it).
type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
	mode  fs.FileMode
}

func stampOf(path string) (fileStamp, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	s := fileStamp{size: st.Size(), mtime: st.ModTime(), mode: st.Mode()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = sys.Ino
	}
	return s, true
}

func hashFile(path string) ([32]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return [32]byte{}, 0, err
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n, nil
}

// copyFileAtomic installs src at dst with mode, atomically.
func copyFileAtomic(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeAtomic(dst, mode, "", func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	}, nil)
}

func removeIfExists(path string) (bool, error) {
	err := os.Remove(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func sha256Sum(data []byte) []byte {
	s := sha256.Sum256(data)
	return s[:]
}

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }
