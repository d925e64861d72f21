package nodeagent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/config/configtest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// createPod creates a sidecar pod bound to node and returns its UID.
func createPod(t *testing.T, name, node string, annotations map[string]string) string {
	t.Helper()
	p := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": "default", "annotations": annotations},
		"spec": map[string]any{"nodeName": node, "containers": []any{
			map[string]any{"name": "app", "image": "app:1"},
			map[string]any{"name": "istio-proxy", "image": "proxy:1"},
		}},
	}
	var out struct {
		Metadata struct{ UID string } `json:"metadata"`
	}
	if err := api.Do(context.Background(), "admin", "POST", "/api/v1/namespaces/default/pods", p, &out); err != nil {
		t.Fatal(err)
	}
	return out.Metadata.UID
}

func deletePod(t *testing.T, name string) {
	t.Helper()
	body := map[string]any{"gracePeriodSeconds": 0}
	if err := api.Do(context.Background(), "admin", "DELETE", "/api/v1/namespaces/default/pods/"+name, body, nil); err != nil {
		t.Fatal(err)
	}
}

func podGets(t *testing.T) int {
	t.Helper()
	n, err := api.PodGets(pluginUser)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// agentProc is a running install-cni with its node agent.
type agentProc struct {
	cmd      *exec.Cmd
	socket   string
	health   string
	stdout   *syncBuf
	stderr   *syncBuf
	exited   chan error
	finished bool
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startAgent runs install-cni in dir as agentUser (or with the kubeconfig
// given), its socket at socket.
func startAgent(t *testing.T, dir, socket, kubeconfig string) *agentProc {
	t.Helper()
	return startAgentWith(t, dir, socket, kubeconfig, agentOpts{})
}

// agentOpts are what some tests add: flags, environment (the downward
// API's POD_*), and the CA the plug-in's kubeconfig trusts ("ca" if nil).
type agentOpts struct {
	args, env []string
	ca        []byte
}

func startAgentWith(t *testing.T, dir, socket, kubeconfig string, o agentOpts) *agentProc {
	t.Helper()
	netDir, cniBin, sa := filepath.Join(dir, "net.d"), filepath.Join(dir, "cnibin"), filepath.Join(dir, "sa")
	for _, d := range []string{netDir, cniBin, sa} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(sa, "token"), []byte("tok"), 0o600)
	if o.ca == nil {
		o.ca = []byte("ca")
	}
	_ = os.WriteFile(filepath.Join(sa, "ca.crt"), o.ca, 0o600)
	_ = os.WriteFile(filepath.Join(netDir, "10-bridge.conflist"), cnitest.BridgeConfList(dir, "1.0.0"), 0o644)
	if kubeconfig == "" {
		var err error
		if kubeconfig, err = api.WriteKubeconfig(dir, agentUser); err != nil {
			t.Fatal(err)
		}
	}
	a := &agentProc{socket: socket, health: freeAddr(t), stdout: &syncBuf{}, stderr: &syncBuf{}, exited: make(chan error, 1)}
	args := append([]string{
		"--cni-net-dir=" + netDir, "--cni-bin-dir=" + cniBin, "--kubeconfig-dir=" + netDir, "--service-account-dir=" + sa,
		"--plugin-binary=" + filepath.Join(binDir, "mesh-cni"), "--kube-api-server=" + api.URL,
		"--health-addr=" + a.health, "--metrics-addr=" + a.health, "--resync-interval=1h",
		"--agent-socket=" + socket, "--kubeconfig=" + kubeconfig, "--node-name=" + nodeName}, o.args...)
	a.cmd = exec.Command(filepath.Join(binDir, "install-cni"), args...)
	a.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, o.env...)
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.stop(t, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("install-cni stdout:\n%s\nstderr:\n%s", a.stdout, a.stderr)
		}
	})
	return a
}

func (a *agentProc) stop(t *testing.T, sig syscall.Signal) {
	if a.finished {
		return
	}
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.exited:
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
		t.Error("install-cni did not exit within 20s")
	}
	a.finished = true
}

// readyz returns /readyz's status and body.
func (a *agentProc) readyz() (int, string) {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + a.health + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (a *agentProc) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "install-cni /readyz 200", func() (bool, string) {
		code, body := a.readyz()
		return code == 200, body
	})
}

func (a *agentProc) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + a.health + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// decisions are the agent's decision lines for pod.
func (a *agentProc) decisions(pod string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(a.stdout.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "decision" && m["pod"] == pod {
			out = append(out, m)
		}
	}
	return out
}

// cniCall is one plug-in exec.
type cniCall struct {
	verb, podName, uid, kubeconfig, socket, extra string
	netns                                         *cnitest.Netns
}

func (c cniCall) run(t *testing.T) (string, error) {
	t.Helper()
	stdin := configtest.Conf("1.0.0", fmt.Sprintf(`,"kubeconfig":%q,"agentSocket":%q,"sandboxDir":"","podLookupTimeout":"2s","prevResult":%s%s`,
		c.kubeconfig, c.socket, configtest.PrevResult("1.0.0"), c.extra))
	args := "K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + c.podName
	if c.uid != "" {
		args += ";K8S_POD_UID=" + c.uid
	}
	cmd := exec.Command(filepath.Join(binDir, "mesh-cni"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CNI_COMMAND=" + c.verb, "CNI_CONTAINERID=ctr-" + c.podName,
		"CNI_NETNS=" + c.netns.Path(), "CNI_IFNAME=eth0", "CNI_PATH=" + binDir, "CNI_ARGS=" + args}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%w: %s %s", err, stdout.String(), stderr.String())
	}
	return stderr.String(), nil
}

func newNetns(t *testing.T) *cnitest.Netns {
	t.Helper()
	ns, err := cnitest.NewNetns("mcni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Delete)
	return ns
}

// redirected reports whether the netns's nat table holds our chains.
func redirected(t *testing.T, ns *cnitest.Netns) bool {
	t.Helper()
	var all string
	for _, tool := range []string{"iptables-legacy-save", "iptables-nft-save"} {
		out, _ := ns.Output(tool, "-t", "nat")
		all += out
	}
	return strings.Contains(all, "-A ISTIO_OUTPUT") && strings.Contains(all, "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001")
}

// kubeEvent is the part of a core/v1 Event the tests read.
type kubeEvent struct {
	Type, Reason, Message string
	Count                 int
	InvolvedObject        struct{ Name, UID string } `json:"involvedObject"`
}

func events(t *testing.T, pod, reason string) []kubeEvent {
	t.Helper()
	var list struct{ Items []kubeEvent }
	if err := api.Do(context.Background(), "admin", "GET", "/api/v1/namespaces/default/events", nil, &list); err != nil {
		t.Fatal(err)
	}
	var out []kubeEvent
	for _, e := range list.Items {
		if e.InvolvedObject.Name == pod && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func waitEvent(t *testing.T, pod, reason string) kubeEvent {
	t.Helper()
	var got []kubeEvent
	eventually(t, 15*time.Second, "Event "+reason+" on "+pod, func() (bool, string) {
		got = events(t, pod, reason)
		return len(got) > 0, fmt.Sprint(got)
	})
	return got[0]
}

func eventually(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last: %s", what, limit, last)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
