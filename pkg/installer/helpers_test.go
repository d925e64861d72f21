package installer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/prometheus/client_golang/prometheus"
)

// node is a fake host: net dir, bin dir, kubeconfig dir and a projected
// service account volume laid out the way kubelet's AtomicWriter does it.
type node struct {
	root, net, bin, kc, sa, src string
	saGen                       int
}

func newNode(t testing.TB) *node {
	t.Helper()
	root := t.TempDir()
	n := &node{
		root: root,
		net:  filepath.Join(root, "etc/cni/net.d"),
		bin:  filepath.Join(root, "opt/cni/bin"),
		kc:   filepath.Join(root, "etc/cni/net.d"),
		sa:   filepath.Join(root, "serviceaccount"),
		src:  filepath.Join(root, "image/mesh-cni"),
	}
	for _, d := range []string{n.net, n.bin, n.sa, filepath.Dir(n.src)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The plug-in binary stands in as a small executable script.
	if err := os.WriteFile(n.src, []byte("#!/bin/sh\necho mesh-cni stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	n.rotate(t, "token-0", testCA)
	return n
}

const testCA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

// rotate publishes a new token (and CA) exactly as kubelet does for a
// projected volume: a fresh timestamped dir, a ..data_tmp symlink to it,
// renamed over ..data, user-visible names symlinked through ..data.
func (n *node) rotate(t testing.TB, token, ca string) {
	t.Helper()
	n.saGen++
	gen := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", n.saGen%60, n.saGen)
	dir := filepath.Join(n.sa, gen)
	must(t, os.Mkdir(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "token"), []byte(token), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "ca.crt"), []byte(ca), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "namespace"), []byte("mesh-cni-system"), 0o644))
	old, _ := os.Readlink(filepath.Join(n.sa, "..data"))
	tmp := filepath.Join(n.sa, "..data_tmp")
	must(t, os.Symlink(gen, tmp))
	must(t, os.Rename(tmp, filepath.Join(n.sa, "..data")))
	for _, f := range []string{"token", "ca.crt", "namespace"} {
		link := filepath.Join(n.sa, f)
		if _, err := os.Lstat(link); err != nil {
			must(t, os.Symlink(filepath.Join("..data", f), link))
		}
	}
	if old != "" {
		must(t, os.RemoveAll(filepath.Join(n.sa, old)))
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (n *node) args(extra ...string) []string {
	return append([]string{
		"--cni-net-dir=" + n.net, "--cni-bin-dir=" + n.bin, "--kubeconfig-dir=" + n.kc,
		"--service-account-dir=" + n.sa, "--plugin-binary=" + n.src,
		"--kube-api-server=https://127.0.0.1:6443",
		"--health-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0",
		"--resync-interval=200ms", "--log-level=debug",
	}, extra...)
}

func (n *node) config(t testing.TB, extra ...string) Config {
	t.Helper()
	c, err := ParseFlags(n.args(extra...), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (n *node) write(t testing.TB, name, content string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(n.net, name), []byte(content), 0o644))
}

// replace writes name atomically the way most CNI installers do.
func (n *node) replace(t testing.TB, name, content string) {
	t.Helper()
	tmp := filepath.Join(n.net, ".tmp-"+name+".swp")
	must(t, os.WriteFile(tmp, []byte(content), 0o644))
	must(t, os.Rename(tmp, filepath.Join(n.net, name)))
}

func (n *node) read(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.net, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// runtimeView loads the net dir the way containerd's go-cni / CRI-O's ocicni
// do, straight through libcni (independent of the code under test): the
// lexically first loadable file, returned as a list.
func runtimeView(dir string) (string, *libcni.NetworkConfigList) {
	files, _ := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	sort.Strings(files)
	for _, f := range files {
		if strings.HasSuffix(f, ".conflist") {
			l, err := libcni.ConfListFromFile(f)
			if err != nil || len(l.Plugins) == 0 {
				continue
			}
			return filepath.Base(f), l
		}
		c, err := libcni.ConfFromFile(f)
		if err != nil || c.Network.Type == "" {
			continue
		}
		l, err := libcni.ConfListFromConf(c)
		if err != nil {
			continue
		}
		return filepath.Base(f), l
	}
	return "", nil
}

// chainedLast says whether the runtime's network ends with exactly one
// mesh-cni plug-in.
func chainedLast(dir string) (bool, string) {
	name, l := runtimeView(dir)
	if l == nil {
		return false, "runtime finds no network"
	}
	n := 0
	for _, p := range l.Plugins {
		if p.Network.Type == PluginType {
			n++
		}
	}
	if last := l.Plugins[len(l.Plugins)-1].Network.Type; last != PluginType || n != 1 {
		return false, fmt.Sprintf("runtime uses %s: last plug-in %q, %d mesh-cni entries", name, last, n)
	}
	return true, name
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, last)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// syncBuffer collects log output safely across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is an installer started in-process.
type running struct {
	*Installer
	cfg    Config
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

// start runs an installer until stop (or the end of the test); its log is
// printed when the test fails.
func start(t testing.TB, cfg Config) *running {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Registry = prometheus.NewRegistry()
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Installer: in, cfg: cfg, logs: logs, cancel: cancel, done: make(chan error, 1), reg: cfg.Registry}
	go func() { r.done <- in.Run(ctx) }()
	t.Cleanup(func() {
		if r.cancel != nil {
			_ = r.stop(t)
		}
		if t.Failed() {
			t.Logf("log of instance %s:\n%s", cfg.InstanceID, logs.String())
		}
	})
	return r
}

// stop cancels (the in-process SIGTERM) and waits for Run to return.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("installer did not stop within 10s")
		return nil
	}
}

func (r *running) waitReady(t testing.TB) {
	t.Helper()
	eventually(t, 10*time.Second, "ready", func() (bool, string) {
		code, body := get(r.HealthAddr(), "/readyz")
		return code == http.StatusOK, fmt.Sprint(code, " ", body)
	})
}

func (r *running) counter(name string, labels ...string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		sum := 0.0
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			if m.Counter != nil {
				sum += m.GetCounter().GetValue()
			} else if m.Gauge != nil {
				sum += m.GetGauge().GetValue()
			}
		}
		return sum
	}
	return 0
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func get(addr, path string) (int, string) {
	resp, err := httpClient.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
