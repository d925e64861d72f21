package plugin

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCheckNetns classifies real paths: only a NET namespace is one.
func TestCheckNetns(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	fifo := filepath.Join(dir, "fifo")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkNetns("/proc/self/ns/net"); err != nil {
		t.Fatalf("our own netns: %v", err)
	}
	for path, notNetns := range map[string]bool{
		"":                  false,
		dir + "/missing":    false,
		file:                true,
		dir:                 true,
		fifo:                true, // and the open did not block
		"/proc/self/ns/uts": true,
		"/proc/self/ns/ipc": true,
		"/proc/self/status": true,
		"/dev/null":         true,
	} {
		err := checkNetns(path)
		if err == nil || errors.Is(err, errNotNetns) != notNetns {
			t.Errorf("checkNetns(%q) = %v; want a %v errNotNetns error", path, err, notNetns)
		}
	}
}
