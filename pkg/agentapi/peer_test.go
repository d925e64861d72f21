package agentapi

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// The test binary doubles as a fake agent run as another user:
// AGENTAPI_TEST_LISTEN=path makes it answer every pod request with ok.
func TestMain(m *testing.M) {
	if path := os.Getenv("AGENTAPI_TEST_LISTEN"); path != "" {
		fakeAgent(path)
		return
	}
	os.Exit(m.Run())
}

func fakeAgent(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.Exit(3)
	}
	_ = os.Chmod(path, 0o666)
	os.Stdout.WriteString("listening\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		var req Request
		if ReadMessage(c, &req) == nil && req.Pod != nil {
			_ = WriteMessage(c, &Response{Version: Version, Status: StatusOK, UID: "forged",
				Pod: &pod.Pod{Metadata: pod.Metadata{Namespace: req.Pod.Namespace, Name: req.Pod.Name}}})
		}
		c.Close()
	}
}

func serveOK(t *testing.T, ln net.Listener) <-chan string {
	kinds := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var req Request
			if ReadMessage(c, &req) == nil {
				kinds <- req.Kind
			}
			if req.Pod != nil {
				_ = WriteMessage(c, &Response{Version: Version, Status: StatusOK, UID: "u1",
					Pod: &pod.Pod{Metadata: pod.Metadata{Namespace: req.Pod.Namespace, Name: req.Pod.Name}}})
			}
			c.Close()
		}
	}()
	return kinds
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the peer check is about uid 0")
	}
}

func TestClientTalksToRootAgent(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	kinds := serveOK(t, ln)
	c := &Client{Socket: path}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p, uid, err := c.GetPod(ctx, PodRequest{Namespace: "ns", Name: "p"})
	if err != nil || uid != "u1" || p.Metadata.Name != "p" {
		t.Fatalf("%v %v %v", p, uid, err)
	}
	// The agent closes each connection after answering: the report that
	// follows must travel on a new one and arrive.
	if err := c.Report(ctx, &Report{Verb: "ADD"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{KindPod, KindReport} {
		select {
		case got := <-kinds:
			if got != want {
				t.Fatalf("agent got %s, want %s", got, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("agent never got the %s", want)
		}
	}
}

// A socket at the agent's path served by a process that is not root is
// not the agent: the client refuses it before sending anything, so a local
// user cannot feed the plug-in a forged pod.
func TestClientRefusesNonRootAgent(t *testing.T) {
	requireRoot(t)
	dir := worldDir(t)
	exe := copyExecutable(t, dir)
	path := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = []string{"AGENTAPI_TEST_LISTEN=" + path}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Pdeathsig: syscall.SIGKILL}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line := make([]byte, 10)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "listening\n" {
		t.Fatalf("fake agent did not start: %q %v", line, err)
	}
	c := &Client{Socket: path}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _, err := c.GetPod(ctx, PodRequest{Namespace: "ns", Name: "p"})
	if err == nil || !strings.Contains(err.Error(), "runs as uid 65534") {
		t.Fatalf("answer from a non-root agent accepted: %v", err)
	}
	if err := c.Report(ctx, &Report{Verb: "ADD"}); err == nil {
		t.Fatal("report sent to a non-root agent")
	}
}

// copyExecutable puts the test binary where uid 65534 can run it.
func copyExecutable(t *testing.T, dir string) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "fake-agent")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// worldDir is a directory uid 65534 can use (t.TempDir's parent is 0700).
func worldDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "agentapi-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}
