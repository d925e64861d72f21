package installer

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenConfig is the fixed configuration every golden case uses.
func goldenConfig(t testing.TB) Config {
	t.Helper()
	c, err := ParseFlags([]string{
		"--kube-api-server=https://10.96.0.1:443",
		"--exclude-namespaces=kube-system,istio-system",
	}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readCase(t *testing.T, dir string) []DirFile {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "in"))
	if err != nil {
		t.Fatal(err)
	}
	var files []DirFile
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, "in", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, DirFile{Name: e.Name(), Data: data})
	}
	return files
}

// apply performs a plan on an in-memory directory.
func apply(files []DirFile, p Plan) []DirFile {
	m := map[string][]byte{}
	for _, f := range files {
		m[f.Name] = f.Data
	}
	for _, w := range p.Writes {
		m[w.Name] = w.Data
	}
	for _, r := range p.Removes {
		delete(m, r)
	}
	var out []DirFile
	for n, d := range m {
		out = append(out, DirFile{Name: n, Data: d})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func renderPlan(b *strings.Builder, p Plan) {
	fmt.Fprintf(b, "primary: %s\ntarget: %s\n", p.Primary, p.Target)
	var rs []string
	for _, r := range p.Reasons {
		rs = append(rs, string(r))
	}
	fmt.Fprintf(b, "reasons: %s\n", strings.Join(rs, ","))
	for _, s := range p.Skipped {
		fmt.Fprintf(b, "skipped: %s\n", s)
	}
	for _, w := range p.Writes {
		fmt.Fprintf(b, "write %s (mode of %s):\n", w.Name, w.ModeFrom)
		for _, line := range strings.SplitAfter(strings.TrimSuffix(string(w.Data), "\n"), "\n") {
			fmt.Fprintf(b, "| %s", strings.TrimSuffix(line, "\n")+"\n")
		}
	}
	for _, r := range p.Removes {
		fmt.Fprintf(b, "remove %s\n", r)
	}
}

func TestGoldenMerge(t *testing.T) {
	cfg := goldenConfig(t)
	entry := cfg.Entry()
	cases, err := os.ReadDir("testdata/golden")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 8 {
		t.Fatalf("only %d golden cases", len(cases))
	}
	for _, c := range cases {
		dir := filepath.Join("testdata/golden", c.Name())
		t.Run(c.Name(), func(t *testing.T) {
			files := readCase(t, dir)
			confName := ""
			if b, err := os.ReadFile(filepath.Join(dir, "conf-name")); err == nil {
				confName = strings.TrimSpace(string(b))
			}
			var out strings.Builder
			out.WriteString("# install\n")
			plan, err := PlanInstall(files, confName, entry, nil)
			if err != nil {
				t.Fatal(err)
			}
			renderPlan(&out, plan)
			checkInstallInvariants(t, files, plan, entry)

			after := apply(files, plan)
			again, err := PlanInstall(after, confName, entry, plan.Conversions)
			if err != nil {
				t.Fatal(err)
			}
			if plan.Primary != "" && !again.InPlace() {
				t.Errorf("second pass is not a no-op: %+v", again)
			}

			out.WriteString("# cleanup\n")
			cleanup, err := PlanCleanup(after, plan.Conversions)
			if err != nil {
				t.Fatal(err)
			}
			renderPlan(&out, cleanup)
			final := apply(after, cleanup)
			checkCleanupInvariants(t, files, final)

			golden := filepath.Join(dir, "want.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/installer -run TestGoldenMerge -update)", err)
			}
			if out.String() != string(want) {
				t.Errorf("plan differs from %s (rerun with -update if intended):\n--- got\n%s\n--- want\n%s", golden, out.String(), want)
			}
		})
	}
}

// checkInstallInvariants holds whatever the golden file says: the written
// list loads with libcni, ends with exactly our entry, keeps the original
// cniVersion and name, and keeps every other plugin and top-level key.
func checkInstallInvariants(t *testing.T, files []DirFile, p Plan, entry []byte) {
	t.Helper()
	if p.Primary == "" {
		if len(p.Writes)+len(p.Removes) > 0 {
			t.Errorf("no primary, yet the plan changes files")
		}
		return
	}
	orig := fileData(files, p.Primary)
	var origList []byte
	if isConfList(p.Primary) {
		origList = orig
	} else {
		var err error
		if origList, err = ConfToConfList(orig); err != nil {
			t.Fatal(err)
		}
	}
	after := fileData(apply(files, p), p.Target)
	list, err := libcni.ConfListFromBytes(after)
	if err != nil {
		t.Fatalf("result does not load with libcni: %v", err)
	}
	if last := list.Plugins[len(list.Plugins)-1]; last.Network.Type != PluginType {
		t.Errorf("libcni sees %q as the last plugin, want %q", last.Network.Type, PluginType)
	}
	_, raw, err := splitConfList(after)
	if err != nil || !compactEqual(raw[len(raw)-1], entry) {
		t.Errorf("last plugin is %s, want our entry %s", raw[len(raw)-1], entry)
	}
	n, _, _ := countEntries(after)
	if n != 1 {
		t.Errorf("%d mesh-cni entries, want 1", n)
	}
	var v struct {
		CNIVersion *string `json:"cniVersion"`
		Name       string  `json:"name"`
	}
	var w = v
	_ = json.Unmarshal(orig, &v)
	_ = json.Unmarshal(after, &w)
	if (v.CNIVersion == nil) != (w.CNIVersion == nil) || (v.CNIVersion != nil && *v.CNIVersion != *w.CNIVersion) {
		t.Errorf("cniVersion changed: %v -> %v", deref(v.CNIVersion), deref(w.CNIVersion))
	}
	if v.Name != w.Name {
		t.Errorf("name changed: %q -> %q", v.Name, w.Name)
	}
	// Everything but our entries is preserved, in order.
	stripOrig, _, _ := RemoveEntries(origList)
	stripAfter, _, _ := RemoveEntries(after)
	if !compactEqual(stripOrig, stripAfter) {
		t.Errorf("content other than our entry changed:\n%s\n--\n%s", stripOrig, stripAfter)
	}
}

// checkCleanupInvariants: after install + cleanup no entry is left and
// every file the case started with says what it said (a converted .conf
// comes back byte for byte).
func checkCleanupInvariants(t *testing.T, before, after []DirFile) {
	t.Helper()
	for _, f := range after {
		if !isConfList(f.Name) {
			continue
		}
		if n, total, err := countEntries(f.Data); err == nil && n > 0 && n < total {
			t.Errorf("%s still holds %d mesh-cni entries after cleanup", f.Name, n)
		}
	}
	for _, f := range before {
		got := fileData(after, f.Name)
		if !hasFile(after, f.Name) {
			t.Errorf("%s is gone after cleanup", f.Name)
			continue
		}
		if bytes.Equal(got, f.Data) {
			continue
		}
		want, _, err := RemoveEntries(f.Data)
		if err != nil || !compactEqual(got, want) {
			t.Errorf("%s after cleanup:\n%s\nwant (up to whitespace):\n%s", f.Name, got, want)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<absent>"
	}
	return *s
}
