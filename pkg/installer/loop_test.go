package installer

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testdata(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/golden", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mode(t testing.TB, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestWholeLoop drives one in-process instance through a node's life on the
// real filesystem: install next to a bridge .conf, repairs, a new primary,
// and the undo on cancel (what SIGTERM does in the binary).
func TestWholeLoop(t *testing.T) {
	n := newNode(t)
	calico := testdata(t, "calico/in/10-calico.conflist")
	bridge := testdata(t, "bridge-conf/in/10-bridge.conf")
	n.write(t, "10-calico.conflist", calico)
	must(t, os.Chmod(filepath.Join(n.net, "10-calico.conflist"), 0o600))
	n.write(t, "99-bridge.conf", bridge)
	// A temp file from an earlier crash, old enough to be stale, and a
	// young one that may belong to a live writer.
	stale := filepath.Join(n.bin, tempPrefix+"123")
	must(t, os.WriteFile(stale, []byte("half a binary"), 0o600))
	must(t, os.Chtimes(stale, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour)))
	young := filepath.Join(n.bin, tempPrefix+"456")
	must(t, os.WriteFile(young, []byte("in flight"), 0o600))

	r := start(t, n.config(t))
	r.waitReady(t)

	// Inserted into the runtime's choice (calico sorts first), nowhere else.
	if ok, why := chainedLast(n.net); !ok || why != "10-calico.conflist" {
		t.Fatalf("after install: %v %s", ok, why)
	}
	if got := n.read(t, "99-bridge.conf"); got != bridge {
		t.Errorf("the non-primary .conf was touched:\n%s", got)
	}
	if m := mode(t, filepath.Join(n.net, "10-calico.conflist")); m != 0o600 {
		t.Errorf("primary mode %v, want 0600 kept", m)
	}
	bin := filepath.Join(n.bin, PluginType)
	if m := mode(t, bin); m != 0o755 {
		t.Errorf("binary mode %v", m)
	}
	if b, _ := os.ReadFile(bin); !bytes.Equal(b, mustRead(t, n.src)) {
		t.Error("binary content differs from the source")
	}
	for _, f := range []string{KubeconfigName, TokenName} {
		if m := mode(t, filepath.Join(n.kc, f)); m != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, m)
		}
	}
	if exists(stale) {
		t.Error("stale temp file of an interrupted write was not removed")
	}
	if !exists(young) {
		t.Error("a young temp file (maybe another writer's) was removed")
	}
	must(t, os.Remove(young))
	o, err := ReadOwner(n.net)
	if err != nil || o == nil || o.InstanceID != r.cfg.InstanceID {
		t.Fatalf("owner file: %+v %v", o, err)
	}
	if code, body := get(r.HealthAddr(), "/healthz"); code != 200 {
		t.Errorf("/healthz %d %s", code, body)
	}
	if code, body := get(r.MetricsAddr(), "/metrics"); code != 200 || !strings.Contains(body, "mesh_cni_ready 1") ||
		!strings.Contains(body, `mesh_cni_installs_total{file="conflist"} 1`) {
		t.Errorf("/metrics %d:\n%s", code, body)
	}

	// No loop on our own writes: several passes later nothing was rewritten.
	installs := r.counter("mesh_cni_installs_total")
	p0 := r.passes.Load()
	eventually(t, 10*time.Second, "three resync passes", func() (bool, string) { return r.passes.Load() >= p0+3, "" })
	if got := r.counter("mesh_cni_installs_total"); got != installs {
		t.Errorf("files rewritten without drift: installs %v -> %v", installs, got)
	}

	// The primary CNI rewrites its file (atomically) without our entry.
	n.replace(t, "10-calico.conflist", calico)
	eventually(t, 5*time.Second, "entry restored after an atomic rewrite", func() (bool, string) { return chainedLast(n.net) })
	// ... and in place, truncate + write, as a shell redirect does.
	n.write(t, "10-calico.conflist", calico)
	eventually(t, 5*time.Second, "entry restored after an in-place rewrite", func() (bool, string) { return chainedLast(n.net) })
	eventually(t, 5*time.Second, "repairs counted", func() (bool, string) {
		return r.counter("mesh_cni_repairs_total", "reason", "missing") >= 2, ""
	})
	// Our entry moved to the middle by someone.
	moved := strings.Replace(n.read(t, "10-calico.conflist"), `"type": "portmap"`, `"type": "zz-after"`, 1)
	var l map[string]any
	must(t, json.Unmarshal([]byte(moved), &l))
	ps := l["plugins"].([]any)
	ps[len(ps)-1], ps[len(ps)-2] = ps[len(ps)-2], ps[len(ps)-1]
	b, _ := json.Marshal(l)
	n.replace(t, "10-calico.conflist", string(b))
	calicoNow, _, _ := RemoveEntries(b) // what calico's file says from now on
	eventually(t, 5*time.Second, "entry last again", func() (bool, string) { return chainedLast(n.net) })
	eventually(t, 5*time.Second, "not_last repair counted", func() (bool, string) {
		return r.counter("mesh_cni_repairs_total", "reason", "not_last") >= 1, ""
	})

	// Binary and kubeconfig deleted: put back.
	must(t, os.Remove(bin))
	must(t, os.Remove(filepath.Join(n.kc, KubeconfigName)))
	eventually(t, 5*time.Second, "binary and kubeconfig restored", func() (bool, string) {
		return exists(bin) && exists(filepath.Join(n.kc, KubeconfigName)), ""
	})

	// A new lexically-first file appears (a bridge .conf): the entry moves
	// there (converted to a .conflist, cniVersion kept) and leaves calico.
	n.write(t, "00-bridge.conf", bridge)
	eventually(t, 5*time.Second, "entry moved to the new primary", func() (bool, string) {
		ok, name := chainedLast(n.net)
		return ok && name == "00-bridge.conflist" && !exists(filepath.Join(n.net, "00-bridge.conf")), name
	})
	if c, _, _ := countEntries([]byte(n.read(t, "10-calico.conflist"))); c != 0 {
		t.Error("old primary still holds our entry")
	}
	if !strings.Contains(n.read(t, "00-bridge.conflist"), `"cniVersion": "0.4.0"`) {
		t.Error("converted list lost the original cniVersion")
	}
	r.waitReady(t)

	// Cancel = SIGTERM: everything undone, the .conf restored byte for byte.
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := n.read(t, "00-bridge.conf"); got != bridge {
		t.Errorf("converted .conf not restored:\n%s", got)
	}
	if got := n.read(t, "99-bridge.conf"); got != bridge {
		t.Error("99-bridge.conf changed")
	}
	if !compactEqual([]byte(n.read(t, "10-calico.conflist")), calicoNow) {
		t.Errorf("calico not restored:\n%s", n.read(t, "10-calico.conflist"))
	}
	for _, p := range []string{bin, filepath.Join(n.net, "00-bridge.conflist"), filepath.Join(n.kc, KubeconfigName),
		filepath.Join(n.kc, TokenName), filepath.Join(n.net, OwnerFileName)} {
		if exists(p) {
			t.Errorf("%s left behind", p)
		}
	}
	assertNoTemps(t, n)
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertNoTemps(t *testing.T, n *node) {
	t.Helper()
	for _, p := range temps(n) {
		t.Errorf("temp file left: %s", p)
	}
}

// temps lists the installer's temp files in the node's directories.
func temps(n *node) []string {
	var out []string
	for _, d := range []string{n.net, n.bin, n.kc} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), tempPrefix) {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	return out
}

// TestWaitsForPrimary: no primary yet means not ready and nothing written to
// the net dir; the primary appearing later is picked up at once.
func TestWaitsForPrimary(t *testing.T) {
	n := newNode(t)
	n.write(t, "00-half.conflist", `{"name": "x", "plugins": [`) // invalid for good (old)
	old := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(filepath.Join(n.net, "00-half.conflist"), old, old))
	r := start(t, n.config(t))
	eventually(t, 5*time.Second, "binary installed", func() (bool, string) { return exists(filepath.Join(n.bin, PluginType)), "" })
	p0 := r.passes.Load()
	eventually(t, 10*time.Second, "a few passes", func() (bool, string) { return r.passes.Load() >= p0+3, "" })
	if code, body := get(r.HealthAddr(), "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no primary") {
		t.Errorf("/readyz without a primary: %d %s", code, body)
	}
	if !strings.Contains(r.logs.String(), "waiting for the primary CNI") {
		t.Error("no waiting message in the log")
	}
	n.replace(t, "10-flannel.conflist", testdata(t, "flannel/in/10-flannel.conflist"))
	r.waitReady(t)
	if ok, name := chainedLast(n.net); !ok || name != "10-flannel.conflist" {
		t.Errorf("%v %s", ok, name)
	}
	if got := n.read(t, "00-half.conflist"); got != `{"name": "x", "plugins": [` {
		t.Errorf("invalid neighbour touched: %s", got)
	}
}

// TestSecondInstanceTakesOver: a second instance (the new pod of a rolling
// upgrade) takes over; the first stops reconciling and its exit leaves the
// second's files alone.
func TestSecondInstanceTakesOver(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	a := start(t, n.config(t, "--instance-id=old-pod", "--exclude-namespaces=kube-system"))
	a.waitReady(t)
	b := start(t, n.config(t, "--instance-id=new-pod", "--exclude-namespaces=kube-system,istio-system"))
	b.waitReady(t)
	eventually(t, 5*time.Second, "old instance passive", func() (bool, string) { return a.Passive(), "" })
	wantEntry := b.cfg.Entry()
	hasB := func() (bool, string) {
		d := []byte(n.read(t, "10-calico.conflist"))
		drift, err := CheckEntry(d, wantEntry)
		return err == nil && drift == DriftNone, string(drift)
	}
	eventually(t, 5*time.Second, "new instance's entry in place", hasB)
	// The old instance does not fight for its own settings.
	p0 := a.passes.Load()
	n.replace(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	eventually(t, 5*time.Second, "repaired by the new owner", hasB)
	eventually(t, 5*time.Second, "old instance looked", func() (bool, string) { return a.passes.Load() > p0, "" })
	if ok, _ := hasB(); !ok {
		t.Error("old instance rewrote the entry after the takeover")
	}

	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.logs.String(), "without cleanup") {
		t.Error("old instance did not say why it skipped cleanup")
	}
	for _, p := range []string{filepath.Join(n.bin, PluginType), filepath.Join(n.kc, KubeconfigName), filepath.Join(n.kc, TokenName)} {
		if !exists(p) {
			t.Errorf("old instance's exit removed %s", p)
		}
	}
	if ok, why := hasB(); !ok {
		t.Errorf("old instance's exit touched the entry: %s", why)
	}
	if code, _ := get(b.HealthAddr(), "/readyz"); code != 200 {
		t.Error("new instance not ready after the old one left")
	}
	o, _ := ReadOwner(n.net)
	if o == nil || o.InstanceID != "new-pod" {
		t.Errorf("owner after old exit: %+v", o)
	}
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	if ok, _ := chainedLast(n.net); ok || exists(filepath.Join(n.bin, PluginType)) || exists(filepath.Join(n.net, OwnerFileName)) {
		t.Error("the owner's exit did not clean up")
	}
}

// TestSkipCleanup leaves everything in place.
func TestSkipCleanup(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	r := start(t, n.config(t, "--skip-cleanup"))
	r.waitReady(t)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if ok, why := chainedLast(n.net); !ok {
		t.Error(why)
	}
	for _, p := range []string{filepath.Join(n.bin, PluginType), filepath.Join(n.kc, KubeconfigName), filepath.Join(n.kc, TokenName)} {
		if !exists(p) {
			t.Errorf("--skip-cleanup removed %s", p)
		}
	}
	// A later instance adopts the installation without a duplicate entry.
	r2 := start(t, n.config(t))
	r2.waitReady(t)
	if ok, why := chainedLast(n.net); !ok {
		t.Error(why)
	}
}

// TestDriftWarning: something that keeps undoing us gets a clear warning,
// and we keep repairing.
func TestDriftWarning(t *testing.T) {
	n := newNode(t)
	calico := testdata(t, "calico/in/10-calico.conflist")
	n.write(t, "10-calico.conflist", calico)
	r := start(t, n.config(t, "--drift-warn-count=3", "--drift-warn-window=1m"))
	r.waitReady(t)
	for i := 0; i < 5; i++ {
		before := r.counter("mesh_cni_repairs_total")
		n.replace(t, "10-calico.conflist", calico)
		eventually(t, 5*time.Second, "repair", func() (bool, string) {
			ok, why := chainedLast(n.net)
			return ok && r.counter("mesh_cni_repairs_total") > before, why
		})
	}
	eventually(t, 5*time.Second, "warning", func() (bool, string) {
		return r.counter("mesh_cni_drift_warnings_total") == 1, ""
	})
	if !strings.Contains(r.logs.String(), "exclusive mode") {
		t.Error("warning does not name the likely cause")
	}
}

// TestOwnerGoneReactivates: when the owner cleans up and leaves while an
// older instance is still running, that instance installs again.
func TestOwnerGoneReactivates(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	a := start(t, n.config(t, "--instance-id=a"))
	a.waitReady(t)
	b := start(t, n.config(t, "--instance-id=b"))
	b.waitReady(t)
	eventually(t, 5*time.Second, "a passive", func() (bool, string) { return a.Passive(), "" })
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a active and installed again", func() (bool, string) {
		o, _ := ReadOwner(n.net)
		ok, why := chainedLast(n.net)
		return ok && !a.Passive() && o != nil && o.InstanceID == "a" && exists(filepath.Join(n.bin, PluginType)), why
	})
	a.waitReady(t)
}

func forgeOwner(t *testing.T, n *node, o Owner, mtime time.Time) {
	t.Helper()
	p := filepath.Join(n.net, OwnerFileName)
	must(t, WriteFileAtomic(p, o.encode(), 0o644, ""))
	must(t, os.Chtimes(p, mtime, mtime))
}

// TestSilentOwner: a newer claim whose heartbeat stops (owner killed, or
// gone with --skip-cleanup) is taken over after three heartbeats.
func TestSilentOwner(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	a := start(t, n.config(t, "--instance-id=a"))
	a.waitReady(t)
	forgeOwner(t, n, Owner{InstanceID: "ghost", Since: time.Now().Add(time.Hour), Heartbeat: Duration(100 * time.Millisecond)}, time.Now())
	eventually(t, 5*time.Second, "a passive", func() (bool, string) { return a.Passive(), "" })
	eventually(t, 10*time.Second, "a takes over from the silent owner", func() (bool, string) {
		o, _ := ReadOwner(n.net)
		return !a.Passive() && o != nil && o.InstanceID == "a", ""
	})
	if !strings.Contains(a.logs.String(), "taking over again") {
		t.Error("no takeover message")
	}
}

// TestOlderClaimLoses: a claim from an instance that started earlier (a
// racing write of the old pod) does not make the newer instance passive.
func TestOlderClaimLoses(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	a := start(t, n.config(t, "--instance-id=a"))
	a.waitReady(t)
	forgeOwner(t, n, Owner{InstanceID: "old", Since: time.Now().Add(-time.Hour), Heartbeat: Duration(time.Second)}, time.Now())
	eventually(t, 5*time.Second, "claim restored", func() (bool, string) {
		o, _ := ReadOwner(n.net)
		return o != nil && o.InstanceID == "a", ""
	})
	if a.Passive() {
		t.Error("an older claim made the newer instance passive")
	}
}
