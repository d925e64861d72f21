package podnetns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCgroupLine: whatever a /proc/PID/cgroup holds, inPod never panics
// and matches only when some line's path (the part after the second ':')
// names the UID in one of its spellings.
func FuzzCgroupLine(f *testing.F) {
	for _, s := range []string{v1Cgroupfs, v2Systemd, v2Cgroupfs, otherPod, "0::/\n", "", "::::", "1:name=systemd:/a:b:" + uid} {
		f.Add(s)
	}
	dir := f.TempDir()
	n, _ := needles(uid)
	f.Fuzz(func(t *testing.T, cg string) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cg), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := inPod(dir, n)
		if err != nil {
			t.Fatal(err)
		}
		want := false
		for _, line := range strings.Split(cg, "\n") {
			if parts := strings.SplitN(line, ":", 3); len(parts) == 3 &&
				(strings.Contains(parts[2], n[0]) || strings.Contains(parts[2], n[1])) {
				want = true
			}
		}
		if got != want {
			t.Fatalf("inPod(%q) = %v, want %v", cg, got, want)
		}
	})
}

// FuzzStat: startTime never panics on a /proc/PID/stat, and reads field 22
// of a well-formed one whatever its command name holds.
func FuzzStat(f *testing.F) {
	f.Add("odd) name", "12345")
	f.Add("sleep", "1")
	f.Add(")", "0")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, comm, start string) {
		line := "300 (" + comm + ") S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 " + start + " 0 0\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := startTime(dir)
		if strings.ContainsAny(start, " \t\n\r\v\f)") || strings.ContainsAny(comm, "\n") {
			return // not a well-formed stat line
		}
		if err == nil && start != "" && strings.TrimLeft(start, "0123456789") == "" && len(start) < 19 {
			if want := parseU(start); got != want {
				t.Fatalf("startTime(%q) = %d, want %d", line, got, want)
			}
		}
	})
}

func parseU(s string) uint64 {
	var n uint64
	for _, c := range s {
		n = n*10 + uint64(c-'0')
	}
	return n
}
