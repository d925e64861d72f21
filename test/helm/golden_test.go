package helm

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite test/helm/testdata/golden from the chart")

// capabilities a profile's real cluster serves: the golden render shows
// what is created there (helm template alone knows only the built-in APIs).
var profileAPIs = map[string][]string{
	"openshift": {"--api-versions", "security.openshift.io/v1/SecurityContextConstraints"},
}

// goldenCases are the renders kept in testdata/golden: the defaults, every
// profile, and the values that switch optional objects on.
func goldenCases(t *testing.T) map[string][]string {
	cases := map[string][]string{
		"default": nil,
		"servicemonitor": {"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.interval=30s",
			"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"},
		"servicemonitor-no-crd": {"--set", "metrics.serviceMonitor.enabled=true"},
		"custom":                {"-f", filepath.Join("testdata", "custom-values.yaml")},
	}
	for _, mode := range []string{"label", "repair", "off"} {
		cases["repair-"+mode] = []string{"--set", "repairMode=" + mode}
	}
	cases["taint-off"] = []string{"--set", "taint.enabled=false"}
	// OpenShift with in-place repair: the SCC allows exactly what that mode adds
	cases["profile-openshift-repair"] = append([]string{"-f", filepath.Join(profileDir, "openshift.yaml"), "--set", "repairMode=repair"}, profileAPIs["openshift"]...)
	for _, p := range profiles(t) {
		cases["profile-"+p] = append([]string{"-f", filepath.Join(profileDir, p+".yaml")}, profileAPIs[p]...)
	}
	return cases
}

// TestGolden renders each case and compares it with its golden file
// (go test ./test/helm -run TestGolden -update rewrites them). A golden
// file without a case is an error too: nothing stale is kept.
func TestGolden(t *testing.T) {
	tl := findTools(t)
	dir := filepath.Join("testdata", "golden")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cases := goldenCases(t)
	var names []string
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			got := tl.template(t, cases[name]...)
			// what helm renders must be objects (helm itself does not parse
			// a template's output as YAML in helm template)
			if objs, err := parseObjects(got); err != nil || len(objs) == 0 {
				t.Fatalf("helm template %s: not a valid stream of objects (%d): %v", strings.Join(cases[name], " "), len(objs), err)
			}
			file := filepath.Join(dir, name+".yaml")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(want) != got {
				t.Errorf("helm template %s differs from %s (run with -update if intended):\n%s",
					strings.Join(cases[name], " "), file, lineDiff(string(want), got))
			}
		})
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		if _, ok := cases[strings.TrimSuffix(filepath.Base(f), ".yaml")]; !ok {
			t.Errorf("%s has no case in goldenCases: remove it", f)
		}
	}
}

// lineDiff shows the first lines that differ, with a little context.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			from := max(0, i-3)
			var b strings.Builder
			for j := from; j < i; j++ {
				b.WriteString("    " + w[j] + "\n")
			}
			b.WriteString("  - " + wl + "\n  + " + gl + "\n")
			return b.String()
		}
	}
	return ""
}
