package explain

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// run is `mesh-cni explain ARGS` with the manifests of testdata.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Command(args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// TestGolden holds explain's whole output, exit code first, to
// testdata/golden; go test ./pkg/explain -update rewrites them.
func TestGolden(t *testing.T) {
	conf := filepath.Join("testdata", "conflist.json")
	cases := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{"seed-pod", []string{"-f", "testdata/seed-pod.yaml"}, 0},
		{"seed-pod-json", []string{"-f", "testdata/seed-pod.yaml", "-o", "json"}, 0},
		{"skip-reasons", []string{"-f", "testdata/skip-reasons.yaml", "--config", conf}, 0},
		{"deployment", []string{"-f", "testdata/deployment.yaml"}, 0},
		{"deployment-node-config", []string{"-f", "testdata/deployment.yaml", "--config", conf}, 0},
		{"multi", []string{"-f", "testdata/multi.yaml", "-n", "team-a", "-o", "json"}, 0},
		{"bad-annotation", []string{"-f", "testdata/bad-annotation.yaml"}, 1},
		{"ipv6", []string{"-f", "testdata/ipv6.yaml"}, 0},
		{"tproxy", []string{"-f", "testdata/tproxy.yaml"}, 0},
		{"bookinfo", []string{"-f", "testdata/bookinfo.yaml"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := run(t, c.args...)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, c.wantCode, errOut)
			}
			path := filepath.Join("testdata", "golden", c.name+".txt")
			if *update {
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./pkg/explain -update creates it)", err)
			}
			if out != string(want) {
				t.Errorf("%s differs:\n--- golden\n%s\n--- got\n%s", path, want, out)
			}
		})
	}
}

// TestSeedPodPrintsSeedRules holds the seed pod's IPv4 restore text to the
// shared spec file itself, byte for byte, not to a golden file.
func TestSeedPodPrintsSeedRules(t *testing.T) {
	want, err := redirecttest.SeedRestore()
	if err != nil {
		t.Fatal(err)
	}
	out, _, code := run(t, "-f", "testdata/seed-pod.yaml")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	const head = "# IPv4: iptables-restore --noflush input\n"
	i := strings.Index(out, head)
	if i < 0 {
		t.Fatalf("no IPv4 restore section in:\n%s", out)
	}
	section := out[i+len(head):]
	section = section[:strings.Index(section, "COMMIT\n")+len("COMMIT\n")]
	if section != want {
		t.Fatalf("explain's IPv4 rules are not the seed's:\n--- seed\n%s\n--- explain\n%s", want, section)
	}
}

// TestBookinfoAsPublished: the seed's bookinfo.yaml has no sidecar injected,
// so every workload is "not redirected: no istio-proxy container" and every
// other document is listed as skipped.
func TestBookinfoAsPublished(t *testing.T) {
	out, _, code := run(t, "-f", "testdata/bookinfo.yaml", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var reports []Report
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatal(err)
	}
	deployments := 0
	for _, r := range reports {
		switch r.Kind {
		case "Deployment":
			deployments++
			if r.Redirect || !strings.Contains(r.Reason, "no istio-proxy container") || r.Rules != nil {
				t.Errorf("%s/%s: redirect=%v reason %q", r.Namespace, r.Name, r.Redirect, r.Reason)
			}
		case "Service", "ServiceAccount":
			if r.Skipped == "" || r.Error != "" {
				t.Errorf("%s %s not listed as skipped: %+v", r.Kind, r.Name, r)
			}
		default:
			t.Errorf("unexpected document kind %q", r.Kind)
		}
	}
	if deployments != 6 {
		t.Fatalf("%d Deployments explained, the seed has 6 (details, ratings, reviews v1-v3, productpage)", deployments)
	}
}

// TestBadAnnotationIsADDsError: the refused pod names the annotation as ADD
// does, and the documents after it are still explained.
func TestBadAnnotationIsADDsError(t *testing.T) {
	out, _, code := run(t, "-f", "testdata/bad-annotation.yaml", "-o", "json")
	if code != ExitRefused {
		t.Fatalf("exit %d, want %d", code, ExitRefused)
	}
	var reports []Report
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 3 {
		t.Fatalf("%d reports, want 3", len(reports))
	}
	if !strings.Contains(reports[0].Error, "annotation traffic.sidecar.istio.io/excludeInboundPorts") || reports[0].Redirect {
		t.Errorf("bad annotation not named: %+v", reports[0])
	}
	if !reports[1].Redirect || reports[1].Rules == nil {
		t.Errorf("the good pod after it was not explained: %+v", reports[1])
	}
	if reports[2].Error == "" {
		t.Errorf("unreadable document not refused: %+v", reports[2])
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-f", "testdata/nope.yaml"},
		{"-f", "testdata/seed-pod.yaml", "-o", "yaml"},
		{"-f", "testdata/seed-pod.yaml", "--config", "testdata/seed-pod.yaml"},
	} {
		if _, errOut, code := run(t, args...); code != ExitUsage || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q; want %d and a message", args, code, errOut, ExitUsage)
		}
	}
}
