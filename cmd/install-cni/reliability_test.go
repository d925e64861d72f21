package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/meshcni/mesh-cni/pkg/installer"
)

// host is a node's CNI directories on the real filesystem, driven by real
// install-cni processes.
type host struct {
	root, net, bin, sa, src string
}

const primaryName = "10-calico.conflist"

func newHost(t *testing.T) *host {
	t.Helper()
	root := t.TempDir()
	h := &host{root: root, net: filepath.Join(root, "net.d"), bin: filepath.Join(root, "bin"),
		sa: filepath.Join(root, "sa"), src: filepath.Join(root, "mesh-cni-src")}
	for _, d := range []string{h.net, h.bin, h.sa} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{h.src: "#!/bin/sh\n", filepath.Join(h.sa, "token"): "tok", filepath.Join(h.sa, "ca.crt"): "ca"} {
		if err := os.WriteFile(p, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.primaryWrite(0); err != nil {
		t.Fatal(err)
	}
	return h
}

// primaryVersion is the primary CNI's conflist, version v: a tuning
// plug-in carries v, so a reverted version shows.
func primaryVersion(v int) string {
	return fmt.Sprintf(`{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "calico", "datastore_type": "kubernetes", "ipam": {"type": "calico-ipam"}},
    {"type": "tuning", "sysctl": {"net.core.somaxconn": "%d"}},
    {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
  ]
}
`, v)
}

var versionRe = regexp.MustCompile(`"net.core.somaxconn":\s*"(\d+)"`)

// primaryWrite replaces the primary's file atomically, as CNI agents do.
func (h *host) primaryWrite(v int) error {
	tmp := filepath.Join(h.net, ".calico-tmp")
	if err := os.WriteFile(tmp, []byte(primaryVersion(v)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(h.net, primaryName))
}

// checkConflist judges one reading of the primary's file: it loads with
// libcni, its other plug-ins are exactly one version of the primary's (none
// lost, none half written), and it holds at most one mesh-cni entry, last.
// It returns the version and whether the entry is there.
func checkConflist(data []byte) (version int, entry bool, err error) {
	l, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return 0, false, fmt.Errorf("does not load: %w", err)
	}
	m := versionRe.FindSubmatch(data)
	if m == nil {
		return 0, false, fmt.Errorf("no version of the primary")
	}
	version, _ = strconv.Atoi(string(m[1]))
	stripped, n, err := installer.RemoveEntries(data)
	if err != nil {
		return 0, false, err
	}
	if !jsonEqual(stripped, []byte(primaryVersion(version))) {
		return version, false, fmt.Errorf("other plug-ins are not the primary's version %d:\n%s", version, data)
	}
	switch {
	case n > 1:
		return version, true, fmt.Errorf("%d mesh-cni entries", n)
	case n == 1 && l.Plugins[len(l.Plugins)-1].Network.Type != installer.PluginType:
		return version, true, fmt.Errorf("mesh-cni entry not last")
	}
	return version, n == 1, nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// watchFile samples the primary's file until stop and reports every bad
// reading (a corrupted or partial file, a lost plug-in, two entries).
func (h *host) watchFile(t *testing.T) (stop func() []string) {
	var bad []string
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			data, err := os.ReadFile(filepath.Join(h.net, primaryName))
			if err == nil {
				if _, _, err = checkConflist(data); err != nil && len(bad) < 5 {
					bad = append(bad, err.Error())
				}
			} else if len(bad) < 5 {
				bad = append(bad, "primary file missing: "+err.Error())
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	return func() []string { close(done); <-finished; return bad }
}

// churn rewrites the primary's file every few milliseconds until stop,
// which returns the last version written.
func (h *host) churn(t *testing.T, every time.Duration) (stop func() int) {
	var last atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for v := 1; ; v++ {
			select {
			case <-done:
				return
			case <-time.After(every):
			}
			if err := h.primaryWrite(v); err != nil {
				t.Error(err)
				return
			}
			last.Store(int64(v))
		}
	}()
	return func() int { close(done); <-finished; return int(last.Load()) }
}

func (h *host) temps() []string {
	ents, _ := os.ReadDir(h.net)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".mesh-cni-tmp-") {
			out = append(out, filepath.Join(h.net, e.Name()))
		}
	}
	return out
}

// proc is one running install-cni process.
type proc struct {
	cmd    *exec.Cmd
	id     string
	addr   string
	logs   *syncBuf
	exited chan error
}

func (h *host) start(t *testing.T, id string, env ...string) *proc {
	t.Helper()
	p := &proc{id: id, addr: freePort(t), logs: &syncBuf{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(binary(t), "--log-level=debug")
	p.cmd.Env = append([]string{
		"CNI_NET_DIR=" + h.net, "CNI_BIN_DIR=" + h.bin, "KUBECONFIG_DIR=" + h.net,
		"SERVICE_ACCOUNT_DIR=" + h.sa, "PLUGIN_BINARY=" + h.src,
		"HEALTH_ADDR=" + p.addr, "METRICS_ADDR=" + p.addr, "INSTANCE_ID=" + id,
		"RESYNC_INTERVAL=200ms", "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
	}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-p.exited:
			p.exited <- err
		default:
			p.cmd.Process.Kill()
			p.exited <- <-p.exited
		}
		if t.Failed() {
			t.Logf("install-cni %s output:\n%s", id, p.logs.String())
		}
	})
	return p
}

func (p *proc) get(path string) (int, string) {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + p.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, 20*time.Second, p.id+" ready", func() (bool, string) {
		code, body := p.get("/readyz")
		return code == 200, body
	})
}

// signal sends sig and waits for the exit.
func (p *proc) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15s of %v", p.id, sig)
		return nil
	}
}

// settled waits until the primary's file holds version v (its plug-ins
// exactly) and exactly one mesh-cni entry, last.
func (h *host) settled(t *testing.T, v int) []byte {
	t.Helper()
	var data []byte
	eventually(t, 20*time.Second, fmt.Sprintf("version %d with our entry, last", v), func() (bool, string) {
		var err error
		data, err = os.ReadFile(filepath.Join(h.net, primaryName))
		if err != nil {
			return false, err.Error()
		}
		got, entry, err := checkConflist(data)
		if err != nil {
			return false, err.Error()
		}
		return got == v && entry, fmt.Sprintf("version %d, entry %v", got, entry)
	})
	return data
}

// TestSIGKILLUnderChurn SIGKILLs the real install-cni at random instants
// while the primary CNI rewrites its conflist every few milliseconds. No
// reading of the file, at any instant, is corrupted, partial, short of a
// plug-in of the primary or holds two entries; after the last restart the
// file holds the primary's last version and exactly one mesh-cni entry,
// last; temp files of killed writes are removed once stale.
func TestSIGKILLUnderChurn(t *testing.T) {
	h := newHost(t)
	stopWatch := h.watchFile(t)
	stopChurn := h.churn(t, 2*time.Millisecond)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	killedTemps := 0
	for round := 0; round < 12; round++ {
		p := h.start(t, fmt.Sprintf("round-%d", round))
		if round%2 == 1 {
			// Half the kills land while it repairs the churn, not while
			// it starts.
			p.waitReady(t)
			time.Sleep(time.Duration(rng.Intn(30)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(5+rng.Intn(60)) * time.Millisecond)
		}
		_ = p.signal(t, syscall.SIGKILL)
		// A killed write's temp file is removed once stale (30 s): age
		// the ones left so the next start removes them.
		for _, tmp := range h.temps() {
			killedTemps++
			old := time.Now().Add(-time.Minute)
			if err := os.Chtimes(tmp, old, old); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
	last := stopChurn()
	final := h.start(t, "final")
	final.waitReady(t)
	h.settled(t, last)
	if bad := stopWatch(); len(bad) > 0 {
		t.Fatalf("bad readings of the conflist during churn and kills:\n%s", strings.Join(bad, "\n"))
	}
	if left := h.temps(); len(left) > 0 {
		t.Errorf("temp files left after restart: %v", left)
	}
	t.Logf("12 SIGKILLs, %d primary rewrites, %d temp files left by killed writes", last, killedTemps)
	owner, err := installer.ReadOwner(h.net)
	if err != nil || owner == nil || owner.InstanceID != "final" {
		t.Errorf("owner after restart: %+v %v", owner, err)
	}
	if err := final.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(h.net, primaryName))
	if !jsonEqual(data, []byte(primaryVersion(last))) {
		t.Errorf("cleanup did not give back the primary's last version:\n%s", data)
	}
}

// TestTwoInstallersRace starts two real install-cni processes on the same
// directories at once, with different settings, while the primary CNI
// rewrites its file. Never two entries and never a corrupted file; the
// owner-file rule holds (exactly one owner, whose entry is the one in the
// file, and no fight: the file stays put); the passive one's exit touches
// nothing, the owner's exit cleans up.
func TestTwoInstallersRace(t *testing.T) {
	h := newHost(t)
	stopWatch := h.watchFile(t)
	stopChurn := h.churn(t, 3*time.Millisecond)
	procs := map[string]*proc{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, tc := range []struct{ id, exclude string }{{"a", "kube-system"}, {"b", "kube-system,istio-system"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := h.start(t, tc.id, "EXCLUDE_NAMESPACES="+tc.exclude)
			mu.Lock()
			procs[tc.id] = p
			mu.Unlock()
		}()
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	last := stopChurn()
	for _, p := range procs {
		p.waitReady(t)
	}
	data := h.settled(t, last)

	owner, err := installer.ReadOwner(h.net)
	if err != nil || owner == nil || procs[owner.InstanceID] == nil {
		t.Fatalf("owner file: %+v %v", owner, err)
	}
	own, other := procs[owner.InstanceID], procs["a"]
	if owner.InstanceID == "a" {
		other = procs["b"]
	}
	for p, want := range map[*proc]string{own: "mesh_cni_owner 1", other: "mesh_cni_owner 0"} {
		eventually(t, 5*time.Second, p.id+" "+want, func() (bool, string) {
			_, body := p.get("/metrics")
			return strings.Contains(body, want+"\n"), ""
		})
	}
	wantExclude := map[string]string{"a": "kube-system", "b": "kube-system,istio-system"}[owner.InstanceID]
	if got := excludeOfEntry(t, data); got != wantExclude {
		t.Errorf("the entry excludes %q, not the owner's (%s) %q:\n%s", got, owner.InstanceID, wantExclude, data)
	}
	// No fight: several resyncs later the file is the same.
	time.Sleep(time.Second)
	if now, _ := os.ReadFile(filepath.Join(h.net, primaryName)); string(now) != string(data) {
		t.Errorf("the file changed without drift (two installers fighting):\n%s\n--\n%s", data, now)
	}
	if bad := stopWatch(); len(bad) > 0 {
		t.Fatalf("bad readings of the conflist while two installers raced:\n%s", strings.Join(bad, "\n"))
	}

	if err := other.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("passive instance exit: %v", err)
	}
	if now, _ := os.ReadFile(filepath.Join(h.net, primaryName)); string(now) != string(data) {
		t.Errorf("the passive instance's exit touched the conflist:\n%s", now)
	}
	if _, err := os.Stat(filepath.Join(h.bin, installer.PluginType)); err != nil {
		t.Errorf("the passive instance's exit removed the binary: %v", err)
	}
	if err := own.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("owner exit: %v", err)
	}
	now, _ := os.ReadFile(filepath.Join(h.net, primaryName))
	if !jsonEqual(now, []byte(primaryVersion(last))) {
		t.Errorf("the owner's exit did not give back the primary's last version:\n%s", now)
	}
	if left := h.temps(); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// excludeOfEntry is the excludeNamespaces of the last plug-in, as a runtime
// hands it to mesh-cni.
func excludeOfEntry(t *testing.T, data []byte) string {
	t.Helper()
	l, err := libcni.ConfListFromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		ExcludeNamespaces []string `json:"excludeNamespaces"`
	}
	if err := json.Unmarshal(l.Plugins[len(l.Plugins)-1].Bytes, &e); err != nil {
		t.Fatal(err)
	}
	return strings.Join(e.ExcludeNamespaces, ",")
}
