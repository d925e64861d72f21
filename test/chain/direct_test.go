package chain

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// execPlugin runs the binary the way a runtime does, without libcni, so the
// exact bytes on stdout can be checked.
func execPlugin(t *testing.T, command, netns, cniArgs string, conf map[string]any) (stdout, stderr string, code int) {
	t.Helper()
	return execPluginVia(t, nil, command, netns, cniArgs, conf)
}

// execPluginVia is execPlugin with the binary started by a wrapper command
// (say, one that hides the iptables tools first); nil runs it directly.
func execPluginVia(t *testing.T, wrapper []string, command, netns, cniArgs string, conf map[string]any) (stdout, stderr string, code int) {
	t.Helper()
	raw, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	argv := append(append([]string{}, wrapper...), filepath.Join(binDir, "mesh-cni"))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{
		"CNI_COMMAND=" + command, "CNI_CONTAINERID=ctr1", "CNI_NETNS=" + netns,
		"CNI_IFNAME=eth0", "CNI_PATH=" + binDir, "CNI_ARGS=" + cniArgs, "PATH=" + os.Getenv("PATH"),
	}
	cmd.Stdin = bytes.NewReader(raw)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// prevResult is what bridge would hand over, in the given version.
func prevResult(version string) map[string]any {
	if strings.HasPrefix(version, "0.3") || version == "0.4.0" {
		return map[string]any{"cniVersion": version,
			"interfaces": []any{map[string]any{"name": "eth0", "sandbox": "/run/netns/x"}},
			"ips":        []any{map[string]any{"version": "4", "interface": 0, "address": "198.18.0.5/24", "gateway": "198.18.0.1"}},
		}
	}
	return map[string]any{"cniVersion": version,
		"interfaces": []any{map[string]any{"name": "eth0", "sandbox": "/run/netns/x"}},
		"ips":        []any{map[string]any{"interface": 0, "address": "198.18.0.5/24", "gateway": "198.18.0.1"}},
	}
}

func netconf(version string, extra map[string]any) map[string]any {
	c := map[string]any{"cniVersion": version, "name": "mesh-test", "type": "mesh-cni",
		"kubeconfig": "/nonexistent/kubeconfig", "excludeNamespaces": []string{"kube-system"}, "sandboxDir": ""}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

const excludedPod = "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1"

// TestEveryVersionPassesThrough: for every supported version the stdout of
// ADD is the prevResult in that version, and nothing else.
func TestEveryVersionPassesThrough(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			out, stderr, code := execPlugin(t, "ADD", "/run/netns/none", excludedPod,
				netconf(v, map[string]any{"prevResult": prevResult(v)}))
			if code != 0 {
				t.Fatalf("exit %d: %s %s", code, out, stderr)
			}
			var got map[string]any
			dec := json.NewDecoder(strings.NewReader(out))
			if err := dec.Decode(&got); err != nil || dec.More() {
				t.Fatalf("stdout is not exactly one JSON document: %q", out)
			}
			if got["cniVersion"] != v || !strings.Contains(out, "198.18.0.5/24") {
				t.Fatalf("stdout is not the prevResult in %s: %s", v, out)
			}
			if !strings.Contains(stderr, "is excluded") {
				t.Errorf("the reason is not logged to stderr: %s", stderr)
			}
		})
	}
	// Not a Kubernetes pod: passed through without a lookup (the kubeconfig
	// does not even exist).
	out, stderr, code := execPlugin(t, "ADD", "/run/netns/none", "IgnoreUnknown=1",
		netconf("1.0.0", map[string]any{"prevResult": prevResult("1.0.0")}))
	if code != 0 || !strings.Contains(out, "198.18.0.5/24") || !strings.Contains(stderr, "not a Kubernetes pod") {
		t.Fatalf("non-Kubernetes ADD: exit %d %s %s", code, out, stderr)
	}
	out, _, code = execPlugin(t, "VERSION", "", "", map[string]any{"cniVersion": "1.1.0"})
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		if code != 0 || !strings.Contains(out, `"`+v+`"`) {
			t.Fatalf("VERSION does not list %s: %s", v, out)
		}
	}
}

// TestErrorsAreCNIErrors: bad input gets a CNI error JSON naming the
// culprit, a non-zero exit, and nothing else on stdout.
func TestErrorsAreCNIErrors(t *testing.T) {
	cases := []struct {
		name  string
		conf  map[string]any
		args  string
		code  float64
		words []string
	}{
		{"not chained", netconf("1.0.0", nil), excludedPod, 7, []string{"must be chained", "prevResult"}},
		{"failurePolicy", netconf("1.0.0", map[string]any{"failurePolicy": "Sometimes", "prevResult": prevResult("1.0.0")}), excludedPod, 7, []string{"failurePolicy", "Sometimes"}},
		{"iptablesBackend", netconf("1.0.0", map[string]any{"iptablesBackend": "ebpf", "prevResult": prevResult("1.0.0")}), excludedPod, 7, []string{"iptablesBackend", "ebpf"}},
		{"logLevel", netconf("1.0.0", map[string]any{"logLevel": "loud", "prevResult": prevResult("1.0.0")}), excludedPod, 7, []string{"logLevel", "loud"}},
		{"excludeNamespaces type", netconf("1.0.0", map[string]any{"excludeNamespaces": "kube-system", "prevResult": prevResult("1.0.0")}), excludedPod, 7, []string{"excludeNamespaces"}},
		{"podLookupTimeout", netconf("1.0.0", map[string]any{"podLookupTimeout": "soon", "prevResult": prevResult("1.0.0")}), excludedPod, 7, []string{"podLookupTimeout"}},
		{"redirect default", netconf("1.0.0", map[string]any{"redirect": map[string]any{"excludeInboundPorts": "22,70000"}, "prevResult": prevResult("1.0.0")}), excludedPod, 7, []string{"redirect.excludeInboundPorts", "70000"}},
		{"kubeconfig missing", netconf("1.0.0", map[string]any{"prevResult": prevResult("1.0.0")}), "K8S_POD_NAMESPACE=default;K8S_POD_NAME=productpage", 11, []string{"/nonexistent/kubeconfig", "default/productpage"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, _, code := execPlugin(t, "ADD", "/run/netns/none", c.args, c.conf)
			if code == 0 {
				t.Fatalf("exit 0 for bad input; stdout %s", out)
			}
			var e map[string]any
			dec := json.NewDecoder(strings.NewReader(out))
			if err := dec.Decode(&e); err != nil || dec.More() {
				t.Fatalf("stdout is not one CNI error document: %q", out)
			}
			if e["code"] != c.code {
				t.Errorf("code %v, want %v (%s)", e["code"], c.code, out)
			}
			for _, w := range c.words {
				if !strings.Contains(e["msg"].(string)+" "+stringOf(e["details"]), w) {
					t.Errorf("error does not name %q: %s", w, out)
				}
			}
		})
	}
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

// TestStatusAndGC: the 1.1.0 verbs.
func TestStatusAndGC(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	out, _, code := execPlugin(t, "STATUS", "", "", netconf("1.1.0", map[string]any{"kubeconfig": kc}))
	var e struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}
	if code == 0 || json.Unmarshal([]byte(out), &e) != nil || e.Code != 50 || !strings.Contains(e.Msg, kc) {
		t.Fatalf("STATUS without kubeconfig: exit %d %s", code, out)
	}
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := execPlugin(t, "STATUS", "", "", netconf("1.1.0", map[string]any{"kubeconfig": kc})); code != 0 || out != "" {
		t.Fatalf("STATUS with kubeconfig: exit %d %q %s", code, out, stderr)
	}
	if out, stderr, code := execPlugin(t, "GC", "", "", netconf("1.1.0", map[string]any{"cni.dev/valid-attachments": []any{}})); code != 0 || out != "" {
		t.Fatalf("GC: exit %d %q %s", code, out, stderr)
	}
}

// TestMeshedStdout: a real meshed ADD at debug level still prints only the
// result on stdout; the logs go to stderr.
func TestMeshedStdout(t *testing.T) {
	pod, err := cnitest.NewNetns("mcni-pod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pod.Delete)
	srv := cnitest.NewPodServer(cnitest.SeedPod("default", "productpage-v1", redirecttest.SeedAnnotations))
	t.Cleanup(srv.Close)
	kc, err := srv.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := execPlugin(t, "ADD", pod.Path(), "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=productpage-v1",
		netconf("1.0.0", map[string]any{"kubeconfig": kc, "logLevel": "debug", "iptablesBackend": "nft", "prevResult": prevResult("1.0.0")}))
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	var res map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&res); err != nil || dec.More() || res["cniVersion"] != "1.0.0" {
		t.Fatalf("stdout: %q", out)
	}
	if !strings.Contains(stderr, "redirect programmed") || !strings.Contains(stderr, `"level":"DEBUG"`) {
		t.Fatalf("stderr lacks the logs: %s", stderr)
	}
	saved, err := pod.Output("iptables-nft-save", "-t", "nat")
	if err != nil || strings.Count(saved, "-A ISTIO_OUTPUT") != 11 {
		t.Fatalf("pod netns: %v\n%s", err, saved)
	}
}
