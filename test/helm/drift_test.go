package helm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// componentValues maps each kustomize component of deploy/components to the
// chart values that must render the same objects. A component missing here
// fails TestNoDrift: whoever adds one to deploy/ says what it is in the chart.
var componentValues = map[string][]string{
	"repair-label":   {"--set", "repairMode=label"},
	"repair-off":     {"--set", "repairMode=off"},
	"repair-inplace": {"--set", "repairMode=repair"},
}

// kustomize renders a kustomization directory with the cached kubectl.
func (tl tools) kustomize(t *testing.T, dir string) string {
	t.Helper()
	out, errOut, err := run(tl.kubectl, "kustomize", dir)
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, errOut)
	}
	return out
}

// overlay writes a kustomization applying one component to deploy/, the way
// a user selects it (docs: components).
func overlay(t *testing.T, base, component string) string {
	t.Helper()
	dir := t.TempDir()
	// kustomize takes only relative paths
	rel := func(p string) string {
		r, err := filepath.Rel(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel(base) +
		"\ncomponents:\n  - " + rel(component) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkSame fails the test with every difference between the two renders.
func checkSame(t *testing.T, what, kustomized, helmed string) {
	t.Helper()
	k, err := parseObjects(kustomized)
	if err != nil {
		t.Fatalf("kustomize output: %v", err)
	}
	h, err := parseObjects(helmed)
	if err != nil {
		t.Fatalf("helm output: %v", err)
	}
	if len(k) == 0 || len(h) == 0 {
		t.Fatalf("%s: empty render (kustomize %d objects, helm %d)", what, len(k), len(h))
	}
	if diffs := compareRenders(k, h, releaseNS); len(diffs) > 0 {
		t.Errorf("%s: the chart and the kustomize base differ (%d):\n  %s\nchange deploy/helm/mesh-cni to match deploy/ (docs/helm.md: no drift)",
			what, len(diffs), strings.Join(diffs, "\n  "))
	}
}

// TestNoDrift: the chart at its defaults renders exactly deploy/'s objects,
// and at each component's values exactly deploy/ with that component.
func TestNoDrift(t *testing.T) {
	tl := findTools(t)
	t.Run("base", func(t *testing.T) {
		checkSame(t, "kubectl kustomize deploy/ vs helm template (defaults)", tl.kustomize(t, deployDir), tl.template(t))
	})
	comps, _ := filepath.Glob(filepath.Join(deployDir, "components", "*"))
	seen := map[string]bool{}
	for _, c := range comps {
		if fi, err := os.Stat(c); err != nil || !fi.IsDir() {
			continue
		}
		name := filepath.Base(c)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			vals, ok := componentValues[name]
			if !ok {
				t.Fatalf("deploy/components/%s has no chart values in test/helm componentValues: map it to the values that render it", name)
			}
			checkSame(t, "deploy/ + components/"+name+" vs helm template "+strings.Join(vals, " "),
				tl.kustomize(t, overlay(t, deployDir, c)), tl.template(t, vals...))
		})
	}
	for name := range componentValues {
		if !seen[name] {
			t.Logf("deploy/components/%s is not in this tree (yet): not compared", name)
		}
	}
}

// TestDriftCheckFails proves the comparison catches what it exists for: a
// copy of deploy/ that gains a ConfigMap key, a DaemonSet field and a whole
// object, and changes a value, must differ from the chart at its defaults,
// each difference named.
func TestDriftCheckFails(t *testing.T) {
	tl := findTools(t)
	dir := t.TempDir()
	copyDir(t, deployDir, dir)
	edit := func(file, old, new string) {
		p := filepath.Join(dir, file)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("%s has no %q to edit", file, old)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("configmap.yaml", "\ndata:\n", "\ndata:\n  NEW_SETTING: \"x\"\n")
	edit("configmap.yaml", `FAILURE_POLICY: "Block"`, `FAILURE_POLICY: "Alert"`)
	edit("daemonset.yaml", "      terminationGracePeriodSeconds: 30\n", "      terminationGracePeriodSeconds: 30\n      hostPID: true\n")
	if err := os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mesh-cni-extra\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	edit("kustomization.yaml", "resources:\n", "resources:\n  - extra.yaml\n")

	k, err := parseObjects(tl.kustomize(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseObjects(tl.template(t))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(compareRenders(k, h, releaseNS), "\n")
	for _, want := range []string{
		"v1 ConfigMap mesh-cni-system/mesh-cni-config: .data.NEW_SETTING: kustomize x, helm (absent)",
		"v1 ConfigMap mesh-cni-system/mesh-cni-config: .data.FAILURE_POLICY: kustomize Alert, helm Block",
		"apps/v1 DaemonSet mesh-cni-system/mesh-cni-node: .spec.template.spec.hostPID: kustomize true, helm (absent)",
		"v1 ConfigMap mesh-cni-system/mesh-cni-extra: in deploy/ but not rendered by the chart",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("drift not reported: %q\nreported:\n%s", want, got)
		}
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // deploy/ is flat; helm/ and components/ are not the base
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
