package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func rec(id, name string, at time.Time) Record {
	return Record{ContainerID: id, Netns: "/var/run/netns/" + id, Namespace: "default", Name: name, Families: []int{4}, Decision: "redirected", Time: at}
}

func TestWriteListRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sandboxes")
	t0 := time.Now()
	for _, r := range []Record{rec("aaa", "web", t0), rec("bbb", "web", t0.Add(time.Second)), rec("ccc", "db", t0)} {
		if err := Write(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	// Garbage beside them: reported, never fatal, never a pod.
	os.WriteFile(filepath.Join(dir, "ddd.json"), []byte("{not json"), 0o600)
	os.WriteFile(filepath.Join(dir, "eee.json"), []byte(`{"v":1,"containerID":"zzz","netns":"/x","namespace":"default","name":"web"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "fff.json"), []byte(`{"v":7,"containerID":"fff","netns":"/x","namespace":"default","name":"web"}`), 0o600)
	entries, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, e := range entries {
		if e.Err != nil {
			bad++
		}
	}
	if len(entries) != 6 || bad != 3 {
		t.Fatalf("%d entries, %d bad; want 6 and 3: %+v", len(entries), bad, entries)
	}
	got, ok := Find(entries, "default", "web")
	if !ok || got.ContainerID != "bbb" {
		t.Fatalf("Find = %+v %v, want the newest sandbox bbb", got, ok)
	}
	if err := Remove(dir, "bbb"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir, "bbb"); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	entries, _ = List(dir)
	if got, _ := Find(entries, "default", "web"); got.ContainerID != "aaa" {
		t.Fatalf("after DEL of bbb, Find = %+v", got)
	}
	left, _ := os.ReadDir(dir)
	for _, de := range left {
		if strings.HasPrefix(de.Name(), ".tmp") {
			t.Fatalf("temporary file left: %s", de.Name())
		}
	}
}

func TestContainerIDIsNotAPath(t *testing.T) {
	dir := t.TempDir()
	for _, id := range []string{"", "../x", "a/b", ".hidden"} {
		if err := Write(dir, rec(id, "web", time.Now())); err == nil {
			t.Errorf("containerID %q accepted", id)
		}
	}
	if des, _ := os.ReadDir(dir); len(des) != 0 {
		t.Fatalf("files written: %v", des)
	}
}

func TestMissingDir(t *testing.T) {
	entries, err := List(filepath.Join(t.TempDir(), "none"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("List of a missing dir = %v, %v", entries, err)
	}
}

// BenchmarkWrite is what recording a sandbox adds to every ADD (tmpfs on
// a node: /var/run).
func BenchmarkWrite(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "sandboxes")
	r := rec("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "productpage-v1-7c8d9f6b5-x2k4q", time.Now())
	for b.Loop() {
		if err := Write(dir, r); err != nil {
			b.Fatal(err)
		}
	}
}
