package main

import (
	"bytes"
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

	"github.com/meshcni/mesh-cni/pkg/installer"
)

// buildBinary builds the real install-cni once per test binary run.
var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "install-cni-build-")
		if buildErr != nil {
			return
		}
		builtPath = filepath.Join(buildDir, "install-cni")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", builtPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPath
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const calico = `{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "calico", "datastore_type": "kubernetes", "ipam": {"type": "calico-ipam"}},
    {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
  ]
}
`

// TestBinarySIGTERM runs the real binary against temp dirs (configured via
// the environment, as the DaemonSet does), waits until /readyz says ready,
// sends SIGTERM and checks that it exits 0 having undone everything.
func TestBinarySIGTERM(t *testing.T) {
	bin := binary(t)
	root := t.TempDir()
	netDir, binDir, sa := filepath.Join(root, "net.d"), filepath.Join(root, "bin"), filepath.Join(root, "sa")
	for _, d := range []string{netDir, binDir, sa} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(root, "mesh-cni-src")
	os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(sa, "token"), []byte("tok"), 0o644)
	os.WriteFile(filepath.Join(sa, "ca.crt"), []byte("ca"), 0o644)
	os.WriteFile(filepath.Join(netDir, "10-calico.conflist"), []byte(calico), 0o644)
	health := freePort(t)

	cmd := exec.Command(bin, "--metrics-addr=", "--log-level=debug")
	cmd.Env = []string{
		"CNI_NET_DIR=" + netDir, "CNI_BIN_DIR=" + binDir, "KUBECONFIG_DIR=" + netDir,
		"SERVICE_ACCOUNT_DIR=" + sa, "PLUGIN_BINARY=" + src, "HEALTH_ADDR=" + health,
		"KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
		"POD_NAME=mesh-cni-node-abcde", "POD_UID=1234", "NODE_NAME=node-1",
	}
	logs := &syncBuf{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("install-cni output:\n%s", logs.String())
		}
	})

	client := &http.Client{Timeout: time.Second}
	eventually(t, 20*time.Second, "/readyz 200", func() (bool, string) {
		resp, err := client.Get("http://" + health + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200, string(b)
	})
	list, _ := os.ReadFile(filepath.Join(netDir, "10-calico.conflist"))
	if d, err := installer.CheckEntry(list, entryFor(t, netDir)); err != nil || d != installer.DriftNone {
		t.Fatalf("entry not in place (%v %v):\n%s", d, err, list)
	}
	owner, err := installer.ReadOwner(netDir)
	if err != nil || owner == nil || owner.PodName != "mesh-cni-node-abcde" || owner.PodUID != "1234" || owner.NodeName != "node-1" {
		t.Errorf("owner file: %+v %v", owner, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15s of SIGTERM")
	}
	list, _ = os.ReadFile(filepath.Join(netDir, "10-calico.conflist"))
	if strings.Contains(string(list), "mesh-cni") {
		t.Errorf("entry left after SIGTERM:\n%s", list)
	}
	for _, p := range []string{filepath.Join(binDir, "mesh-cni"), filepath.Join(netDir, installer.KubeconfigName),
		filepath.Join(netDir, installer.TokenName), filepath.Join(netDir, installer.OwnerFileName)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left after SIGTERM", p)
		}
	}
	if !strings.Contains(logs.String(), "cleaned up") {
		t.Error("no cleanup message in the log")
	}
}

func entryFor(t *testing.T, netDir string) []byte {
	t.Helper()
	// No in-cluster identity here, so the node agent is off and the entry
	// says agentSocket "".
	c, err := installer.ParseFlags([]string{"--kubeconfig-dir=" + netDir, "--log-level=debug", "--agent-socket="},
		func(k string) string {
			return map[string]string{"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}[k]
		})
	if err != nil {
		t.Fatal(err)
	}
	return c.Entry()
}

// TestBinaryRefusesBadFlags: exit code 2 and a message naming the flag.
func TestBinaryRefusesBadFlags(t *testing.T) {
	bin := binary(t)
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--failure-policy=Ignore"}, nil, "--failure-policy"},
		{nil, []string{"LOG_LEVEL=loud"}, "LOG_LEVEL"},
		{[]string{"--cni-net-dir=relative"}, nil, "--cni-net-dir"},
		{[]string{"--health-addr=nope"}, nil, "--health-addr"},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append([]string{"KUBERNETES_SERVICE_HOST=10.0.0.1", "KUBERNETES_SERVICE_PORT=443"}, tc.env...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v %v: exit %v, want 2", tc.args, tc.env, err)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%v %v: output does not name %s:\n%s", tc.args, tc.env, tc.want, out)
		}
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--cni-net-dir (env CNI_NET_DIR)") {
		t.Errorf("--help: %v\n%s", err, out)
	}
}
