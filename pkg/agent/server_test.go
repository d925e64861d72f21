package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/podcache"
)

// The test binary doubles as a plug-in run as another user:
// AGENT_TEST_DIAL=path asks for a pod and prints what happened.
func TestMain(m *testing.M) {
	if path := os.Getenv("AGENT_TEST_DIAL"); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			os.Stdout.WriteString("dial: " + err.Error())
			return
		}
		_ = agentapi.WriteMessage(c, &agentapi.Request{Version: 1, Kind: agentapi.KindPod, Pod: &agentapi.PodRequest{Namespace: "ns", Name: "p"}})
		var resp agentapi.Response
		if err := agentapi.ReadMessage(c, &resp); err != nil {
			os.Stdout.WriteString("no answer: " + err.Error())
			return
		}
		os.Stdout.WriteString("answer: " + resp.Status)
		return
	}
	os.Exit(m.Run())
}

type fakeCache struct {
	synced bool
	pods   map[string]*podcache.Entry
}

func (f *fakeCache) Synced() bool { return f.synced }
func (f *fakeCache) Lookup(_ context.Context, ns, name, uid string, _ time.Duration) (*podcache.Entry, bool) {
	e, ok := f.pods[ns+"/"+name]
	if !ok || (uid != "" && string(e.UID) != uid) {
		return nil, false
	}
	return e, true
}

type testServer struct {
	srv     *server
	m       *metrics
	path    string
	ln      *socketListener
	reports chan *agentapi.Report
}

func startServer(t *testing.T, dir string, cache podCache) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	ts := &testServer{m: newMetrics(reg), path: filepath.Join(dir, "run", "agent.sock"), reports: make(chan *agentapi.Report, 10)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &Config{PodWait: 100 * time.Millisecond}
	ts.srv = &server{cfg: cfg, cache: cache, reports: ts.reports, m: ts.m, log: log, sem: make(chan struct{}, 4)}
	ln, err := listen(ts.path, log)
	if err != nil {
		t.Fatal(err)
	}
	ts.ln = ln
	ctx, cancel := context.WithCancel(context.Background())
	go ts.srv.serve(ctx, ln)
	t.Cleanup(func() { cancel(); ln.Close() })
	return ts
}

func entry(name, uid string) *podcache.Entry {
	return &podcache.Entry{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(uid)},
		Pod: pod.Pod{Metadata: pod.Metadata{Namespace: "ns", Name: name}}}
}

func exchange(t *testing.T, path string, raw []byte) (agentapi.Response, error) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(raw); err != nil {
		t.Fatal(err)
	}
	var resp agentapi.Response
	return resp, agentapi.ReadMessage(c, &resp)
}

func frame(t *testing.T, v any) []byte {
	var b bytes.Buffer
	if err := agentapi.WriteMessage(&b, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSocketFileModes(t *testing.T) {
	ts := startServer(t, t.TempDir(), &fakeCache{})
	for path, want := range map[string]os.FileMode{filepath.Dir(ts.path): 0o700, ts.path: 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v %v, want %v", path, fi.Mode().Perm(), err, want)
		}
	}
}

func TestPodAnswers(t *testing.T) {
	cache := &fakeCache{pods: map[string]*podcache.Entry{"ns/p": entry("p", "u1")}}
	ts := startServer(t, t.TempDir(), cache)
	ask := func(uid string) agentapi.Response {
		resp, err := exchange(t, ts.path, frame(t, &agentapi.Request{Version: 1, Kind: agentapi.KindPod,
			Pod: &agentapi.PodRequest{Namespace: "ns", Name: "p", UID: uid, WaitMillis: 50}}))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := ask(""); r.Status != agentapi.StatusNotReady {
		t.Fatalf("before sync: %+v", r)
	}
	cache.synced = true
	if r := ask("u1"); r.Status != agentapi.StatusOK || r.UID != "u1" || r.Pod.Metadata.Name != "p" {
		t.Fatalf("ok: %+v", r)
	}
	if r := ask("u2"); r.Status != agentapi.StatusMiss || !strings.Contains(r.Error, "uid u2") {
		t.Fatalf("other uid: %+v", r)
	}
	if got := testutil.ToFloat64(ts.m.podRequests.WithLabelValues("ok")); got != 1 {
		t.Fatalf("ok requests metric %v", got)
	}
}

// Oversized and garbled requests get an error answer naming the fault and
// are counted; the agent keeps serving.
func TestOversizedAndGarbled(t *testing.T) {
	ts := startServer(t, t.TempDir(), &fakeCache{synced: true})
	hdr := make([]byte, 4)
	binary.BigEndian.PutUint32(hdr, agentapi.MaxMessage+1)
	if r, err := exchange(t, ts.path, hdr); err != nil || r.Status != agentapi.StatusError || !strings.Contains(r.Error, "larger than the limit") {
		t.Fatalf("oversized: %+v %v", r, err)
	}
	garbled := append([]byte{0, 0, 0, 5}, "{{{{{"...)
	if r, err := exchange(t, ts.path, garbled); err != nil || !strings.Contains(r.Error, "garbled") {
		t.Fatalf("garbled: %+v %v", r, err)
	}
	if r, err := exchange(t, ts.path, frame(t, &agentapi.Request{Version: 9, Kind: agentapi.KindPod})); err != nil || !strings.Contains(r.Error, "version 9") {
		t.Fatalf("version: %+v %v", r, err)
	}
	for kind, want := range map[string]float64{"oversized": 1, "invalid": 2} {
		if got := testutil.ToFloat64(ts.m.socketErrors.WithLabelValues(kind)); got != want {
			t.Errorf("socket errors %s = %v, want %v", kind, got, want)
		}
	}
}

// A request that never completes is cut at the read deadline.
func TestSlowPeerCut(t *testing.T) {
	ts := startServer(t, t.TempDir(), &fakeCache{synced: true})
	c, err := net.Dial("unix", ts.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0, 0, 0, 10})
	_ = c.SetReadDeadline(time.Now().Add(3 * readDeadline))
	var resp agentapi.Response
	if err := agentapi.ReadMessage(c, &resp); err != nil || resp.Status != agentapi.StatusError {
		t.Fatalf("slow peer: %+v %v", resp, err)
	}
}

// A peer that is not root is refused: by the file modes (it cannot even
// connect) and, where the modes were opened, by SO_PEERCRED.
func TestPeerNotRootRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := worldDir(t)
	ts := startServer(t, dir, &fakeCache{synced: true, pods: map[string]*podcache.Entry{"ns/p": entry("p", "u1")}})
	exe := copyExecutable(t, dir)
	run := func() string {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = []string{"AGENT_TEST_DIAL=" + ts.path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := cmd.Output()
		return string(out)
	}
	if out := run(); !strings.Contains(out, "permission denied") {
		t.Fatalf("non-root peer reached the socket through its modes: %q", out)
	}
	_ = os.Chmod(filepath.Dir(ts.path), 0o777)
	_ = os.Chmod(ts.path, 0o777)
	if out := run(); !strings.HasPrefix(out, "no answer") {
		t.Fatalf("non-root peer answered: %q", out)
	}
	if got := testutil.ToFloat64(ts.m.socketErrors.WithLabelValues("peer")); got != 1 {
		t.Fatalf("peer refusals %v", got)
	}
}

// A crashed agent's socket is replaced; anything else at the path is left
// alone and named.
func TestStaleSocketAndForeignFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // a dead agent's file
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := listen(path, log)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("own socket left after close")
	}
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listen(path, log); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Fatal("regular file changed")
	}
}

// During a rolling update the new agent takes the path over; the old one's
// exit must not remove the new one's socket.
func TestTakeoverKeepsSuccessorSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	old, err := listen(path, log)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := old.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	succ, err := listen(path, log)
	if err != nil {
		t.Fatal(err)
	}
	defer succ.Close()
	old.Close()
	if _, err := net.Dial("unix", path); err != nil {
		t.Fatalf("successor's socket gone: %v", err)
	}
}

func TestReportLines(t *testing.T) {
	var out bytes.Buffer
	m := newMetrics(prometheus.NewRegistry())
	r := &reporter{cfg: &Config{}, out: &out, m: m, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		uidOf: func(string, string) string { return "u9" }}
	r.handle(&agentapi.Report{Verb: "ADD", Namespace: "ns", Name: "p", ContainerID: "c1",
		Decision: agentapi.DecisionNotRedirected, Reason: `pod has no istio-proxy container`, Source: agentapi.SourceCache,
		DurationMicros: 1500, Records: []json.RawMessage{[]byte(`{"msg":"pod read","level":"INFO"}`), []byte(`"not an object"`)}})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	var rec, dec map[string]any
	if json.Unmarshal([]byte(lines[0]), &rec) != nil || rec["source"] != "plugin" || rec["msg"] != "pod read" {
		t.Fatalf("record line %s", lines[0])
	}
	if json.Unmarshal([]byte(lines[1]), &dec) != nil {
		t.Fatal(lines[1])
	}
	for k, v := range map[string]any{"pod": "ns/p", "verb": "ADD", "containerID": "c1", "decision": "not-redirected",
		"reason": "pod has no istio-proxy container", "uid": "u9", "podSource": "cache"} {
		if dec[k] != v {
			t.Errorf("decision line %s = %v, want %v", k, dec[k], v)
		}
	}
	if got := testutil.ToFloat64(m.verbs.WithLabelValues("ADD", "not-redirected", "no-sidecar")); got != 1 {
		t.Fatalf("verbs metric %v", got)
	}
}

func TestEventFor(t *testing.T) {
	base := agentapi.Report{Verb: "ADD", Namespace: "ns", Name: "p"}
	for _, c := range []struct {
		mod        func(*agentapi.Report)
		redirected bool
		reason     string
		kind       string
	}{
		{func(r *agentapi.Report) {
			r.Decision, r.Annotation, r.Reason = agentapi.DecisionRefused, "traffic.sidecar.istio.io/excludeOutboundIPRanges", "bad"
		}, true, ReasonBadAnnotation, "Warning"},
		{func(r *agentapi.Report) { r.Decision, r.Cause = agentapi.DecisionRefused, agentapi.CauseAPIUnreachable }, true, ReasonAPIUnreachable, "Warning"},
		{func(r *agentapi.Report) { r.Decision = agentapi.DecisionBypassed }, true, ReasonBypassed, "Warning"},
		{func(r *agentapi.Report) { r.Decision = agentapi.DecisionRedirected }, true, ReasonRedirected, "Normal"},
		{func(r *agentapi.Report) { r.Decision = agentapi.DecisionRedirected }, false, "", ""},
		{func(r *agentapi.Report) { r.Decision = agentapi.DecisionNotRedirected }, true, "", ""},
		{func(r *agentapi.Report) { r.Decision, r.Verb = agentapi.DecisionRedirected, "CHECK" }, true, "", ""},
	} {
		r := base
		c.mod(&r)
		ev, ok := eventFor(&r, c.redirected)
		if ok != (c.reason != "") || ev.reason != c.reason || ev.kind != c.kind {
			t.Errorf("%+v: got %+v %v", r, ev, ok)
		}
		if c.reason == ReasonBadAnnotation && !strings.Contains(ev.message, r.Annotation) {
			t.Errorf("bad annotation event does not name it: %s", ev.message)
		}
	}
}

func worldDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "agent-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyExecutable(t *testing.T, dir string) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "fake-plugin")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}
