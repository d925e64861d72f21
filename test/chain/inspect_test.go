package chain

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// TestInspect (issue 8) runs the built `mesh-cni inspect` against pods the
// real chain set up, on both iptables backends: the seed pod is OK and
// lists the seed's table, a tampered pod is DRIFT naming the rule, a pod
// without sidecar is NOT-REDIRECTED with its reason, a qualifying pod whose
// rules were removed is UNMESHED, a deleted netns is NETNS-GONE, an
// unknown pod exits 2, and DEL forgets the sandbox.
func TestInspect(t *testing.T) {
	for _, backend := range []string{"legacy", "nft"} {
		t.Run(backend, func(t *testing.T) { testInspect(t, backend) })
	}
}

func testInspect(t *testing.T, backend string) {
	noSidecar := cnitest.SeedPod("default", "details-v1", nil)
	noSidecar.Spec.Containers = noSidecar.Spec.Containers[:1]
	pods := []*corev1.Pod{
		cnitest.SeedPod("default", "productpage-v1", redirecttest.SeedAnnotations),
		cnitest.SeedPod("default", "reviews-v1", redirecttest.SeedAnnotations),
		cnitest.SeedPod("default", "ratings-v1", nil),
		cnitest.SeedPod("default", "gone-v1", nil),
		noSidecar,
	}
	sandboxes := filepath.Join(t.TempDir(), "sandboxes")
	e := newEnv(t, "1.0.0", map[string]any{"iptablesBackend": backend, "sandboxDir": sandboxes}, pods...)
	byName := map[string]cnitest.Pod{}
	for _, p := range pods {
		cp := e.pod("default", p.Name)
		if _, err := e.chain.Add(cp); err != nil {
			t.Fatalf("ADD %s: %v", p.Name, err)
		}
		byName[p.Name] = cp
	}
	conflist := filepath.Join(e.dir, "10-mesh-test.conflist")
	inspect := func(args ...string) (string, int) {
		t.Helper()
		// In the node netns: the pod server (the API) listens there.
		full := append([]string{"--net=" + e.chain.Node.Path(), "--", filepath.Join(binDir, "mesh-cni"), "inspect", "--config", conflist}, args...)
		cmd := exec.Command("nsenter", full...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no CNI_COMMAND: the operator's tool
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if errb.Len() > 0 {
			t.Logf("stderr: %s", errb.String())
		}
		return out.String(), cmd.ProcessState.ExitCode()
	}
	expect := func(target string, code int, words ...string) string {
		t.Helper()
		out, got := inspect(target)
		if got != code {
			t.Fatalf("inspect %s: exit %d, want %d:\n%s", target, got, code, out)
		}
		for _, w := range words {
			if !strings.Contains(out, w) {
				t.Fatalf("inspect %s: output lacks %q:\n%s", target, w, out)
			}
		}
		return out
	}

	out := expect("default/productpage-v1", 0, "default/productpage-v1: OK")
	assertSeedTable(t, out)

	// Tamper: the rule that keeps the cluster's excluded range out of the mesh.
	pp := byName["reviews-v1"]
	if err := pp.Netns.Run("iptables-"+backend, "-t", "nat", "-D", "ISTIO_OUTPUT", "-d", "192.168.0.1/32", "-j", "RETURN"); err != nil {
		t.Fatal(err)
	}
	drift := expect("default/reviews-v1", 1, "DRIFT", "missing: -A ISTIO_OUTPUT -d 192.168.0.1/32 -j RETURN")
	t.Logf("the tampered pod:\n%s", drift[:strings.Index(drift, "# iptables")])

	expect("default/details-v1", 3, "NOT-REDIRECTED", "pod has no istio-proxy container")
	expect("nobody/none", 2, "UNKNOWN")

	// The zero-trust hole: a qualifying pod whose netns lost every mesh rule.
	ratings := byName["ratings-v1"]
	for _, args := range [][]string{
		{"-D", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND"}, {"-D", "OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT"},
		{"-F", "ISTIO_INBOUND"}, {"-F", "ISTIO_OUTPUT"}, {"-F", "ISTIO_IN_REDIRECT"}, {"-F", "ISTIO_REDIRECT"},
		{"-X", "ISTIO_INBOUND"}, {"-X", "ISTIO_OUTPUT"}, {"-X", "ISTIO_IN_REDIRECT"}, {"-X", "ISTIO_REDIRECT"},
	} {
		if err := ratings.Netns.Run("iptables-"+backend, append([]string{"-t", "nat"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	expect("default/ratings-v1", 4, "UNMESHED")

	byName["gone-v1"].Netns.Delete()
	expect("default/gone-v1", 2, "NETNS-GONE")

	all, code := inspect("--all")
	if code != 4 {
		t.Fatalf("--all: exit %d, want 4 (an UNMESHED pod):\n%s", code, all)
	}
	for _, row := range []string{"OK  default/productpage-v1", "DRIFT  default/reviews-v1", "NOT-REDIRECTED  default/details-v1",
		"UNMESHED  default/ratings-v1", "NETNS-GONE  default/gone-v1"} {
		if !strings.Contains(strings.Join(strings.Fields(all), "  "), strings.Join(strings.Fields(row), "  ")) {
			t.Errorf("--all lacks %q:\n%s", row, all)
		}
	}

	// A corrupt record is reported, never fatal.
	if err := os.WriteFile(filepath.Join(sandboxes, "garbage.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	all, _ = inspect("--all")
	if !strings.Contains(all, "garbage.json") || !strings.Contains(all, "default/productpage-v1") {
		t.Fatalf("--all with a corrupt record:\n%s", all)
	}

	if err := e.chain.Del(byName["productpage-v1"]); err != nil {
		t.Fatal(err)
	}
	expect("default/productpage-v1", 2, "UNKNOWN")
}

// assertSeedTable holds inspect's listing to the table the seed's spec
// file shows (its commented iptables -L listing), row by row per chain:
// the kernel's own listing, not our rendering.
func assertSeedTable(t *testing.T, out string) {
	t.Helper()
	b, err := os.ReadFile(redirecttest.SeedSpecPath())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	chain := ""
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimPrefix(l, "# ")
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "Chain":
			chain = f[1]
		case chain != "" && len(f) > 2 && isNum(f[0]):
			want[chain] = append(want[chain], strings.Join(f, " "))
		case strings.HasPrefix(l, "*nat"):
			chain = ""
		}
	}
	got := map[string][]string{}
	chain = ""
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "Chain":
			chain = f[1]
		case chain != "" && len(f) > 5 && isNum(f[0]) && isNum(f[1]):
			// num pkts bytes target prot opt in out source destination extra:
			// drop the counters and the opt column, as the seed does.
			row := append([]string{f[0], f[3], f[4]}, f[6:]...)
			got[chain] = append(got[chain], strings.Join(row, " "))
		}
	}
	for c, rows := range want {
		if strings.Join(got[c], "\n") != strings.Join(rows, "\n") {
			t.Errorf("chain %s:\n--- seed\n%s\n--- inspect\n%s", c, strings.Join(rows, "\n"), strings.Join(got[c], "\n"))
		}
	}
	if len(want) != 6 {
		t.Fatalf("read %d chains from the seed's table, want 6", len(want))
	}
}

func isNum(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// TestSubcommandsOnlyWithoutCNICommand: with CNI_COMMAND set the binary is
// the plug-in whatever argv says (a runtime's argv is not ours to read), and
// stdout carries the CNI answer alone.
func TestSubcommandsOnlyWithoutCNICommand(t *testing.T) {
	for _, sub := range []string{"explain", "inspect"} {
		cmd := exec.Command(filepath.Join(binDir, "mesh-cni"), sub, "-f", "/nonexistent")
		cmd.Env = []string{"CNI_COMMAND=VERSION", "PATH=" + os.Getenv("PATH")}
		cmd.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s with CNI_COMMAND=VERSION: %v", sub, err)
		}
		if !strings.HasPrefix(string(out), `{"cniVersion":`) || !strings.Contains(string(out), "supportedVersions") {
			t.Fatalf("%s with CNI_COMMAND=VERSION printed %q, want the plug-in's VERSION answer", sub, out)
		}
	}
	out, err := exec.Command(filepath.Join(binDir, "mesh-cni"), "explain", "-f", "../../pkg/explain/testdata/seed-pod.yaml").Output()
	if err != nil || !strings.Contains(string(out), "verdict: redirected") {
		t.Fatalf("explain without CNI_COMMAND: %v\n%s", err, out)
	}
}
