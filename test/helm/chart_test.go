// Package helm tests the Helm chart (deploy/helm/mesh-cni) with the real helm
// and kubectl binaries: helm lint --strict, golden renders of the default and
// of each platform profile, the schema's refusals as helm reports them, and
// that the chart renders the same objects as the kustomize base (deploy/ and
// each of its components) at matching values.
//
// The binaries come from the local-cluster cache (test/helm/build-helm.sh,
// test/cluster/build-k8s.sh); without them the tests skip, unless
// MESH_CNI_REQUIRE_HELM is set (make test sets it, after building them).
package helm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const (
	releaseName = "mesh-cni"
	releaseNS   = "mesh-cni-system"
)

var (
	repoRoot = func() string {
		_, f, _, _ := runtime.Caller(0)
		return filepath.Clean(filepath.Join(filepath.Dir(f), "..", ".."))
	}()
	chartDir   = filepath.Join(repoRoot, "deploy", "helm", "mesh-cni")
	profileDir = filepath.Join(chartDir, "profiles")
	// deployDir is the kustomize base the chart must match;
	// MESH_CNI_DEPLOY_DIR compares with another tree (a branch's deploy/
	// before it is merged).
	deployDir = func() string {
		if d := os.Getenv("MESH_CNI_DEPLOY_DIR"); d != "" {
			return d
		}
		return filepath.Join(repoRoot, "deploy")
	}()
)

// tools are the binaries the tests run.
type tools struct{ helm, kubectl string }

// findTools reads the cache paths from test/cluster/versions.sh (the one
// place versions live) unless HELM / KUBECTL name the binaries.
func findTools(t *testing.T) tools {
	t.Helper()
	out, err := exec.Command("bash", "-c", `. "$1/test/cluster/versions.sh" && echo "$HELM_BIN_DIR/helm" && echo "$K8S_BIN_DIR/kubectl"`, "-", repoRoot).Output()
	if err != nil {
		t.Fatalf("reading test/cluster/versions.sh: %v", err)
	}
	paths := strings.Fields(string(out))
	tl := tools{helm: paths[0], kubectl: paths[1]}
	if h := os.Getenv("HELM"); h != "" {
		tl.helm = h
	}
	if k := os.Getenv("KUBECTL"); k != "" {
		tl.kubectl = k
	}
	for _, b := range []string{tl.helm, tl.kubectl} {
		if _, err := os.Stat(b); err != nil {
			why := fmt.Sprintf("%s is not built (make helm; make k8s-binaries)", b)
			if os.Getenv("MESH_CNI_REQUIRE_HELM") != "" {
				t.Fatal("helm tests required (MESH_CNI_REQUIRE_HELM) but cannot run: " + why)
			}
			t.Skip(why)
		}
	}
	return tl
}

// run runs a binary and returns stdout and stderr apart.
func run(name string, args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// template renders the chart as `helm install mesh-cni ... -n mesh-cni-system`
// would, with extra helm arguments (-f, --set, --api-versions).
func (tl tools) template(t *testing.T, extra ...string) string {
	t.Helper()
	args := append([]string{"template", releaseName, chartDir, "--namespace", releaseNS}, extra...)
	out, errOut, err := run(tl.helm, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// profiles lists deploy/helm/mesh-cni/profiles/*.yaml by name.
func profiles(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(profileDir, "*.yaml"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no profiles in %s (%v)", profileDir, err)
	}
	var names []string
	for _, p := range m {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".yaml"))
	}
	return names
}

func TestLintStrict(t *testing.T) {
	tl := findTools(t)
	args := [][]string{nil}
	for _, p := range profiles(t) {
		args = append(args, []string{"-f", filepath.Join(profileDir, p+".yaml")})
	}
	for _, m := range []string{"label", "repair", "off"} {
		args = append(args, []string{"--set", "repairMode=" + m})
	}
	for _, a := range args {
		out, errOut, err := run(tl.helm, append([]string{"lint", "--strict", chartDir, "--namespace", releaseNS}, a...)...)
		if err != nil {
			t.Errorf("helm lint --strict %v: %v\n%s%s", a, err, out, errOut)
		}
	}
}
