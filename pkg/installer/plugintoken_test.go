package installer

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTokens is a TokenSource the test drives.
type fakeTokens struct {
	mu      sync.Mutex
	tok     []byte
	err     error
	changed chan struct{}
}

func newFakeTokens() *fakeTokens {
	return &fakeTokens{err: errors.New("no token yet"), changed: make(chan struct{}, 1)}
}

func (f *fakeTokens) Token() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tok, f.err
}

func (f *fakeTokens) Changed() <-chan struct{} { return f.changed }

func (f *fakeTokens) set(tok string, err error) {
	f.mu.Lock()
	f.tok, f.err = []byte(tok), err
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// TestPluginTokenSource: with a token source, the token file holds its
// token (never the mounted one), is written when the source says it
// changed, repaired when tampered with, and the installer is not ready
// while the source has no valid token, saying so once, not every pass.
func TestPluginTokenSource(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	src := newFakeTokens()
	cfg := n.config(t)
	cfg.PluginToken = src
	r := start(t, cfg)
	tokPath := filepath.Join(n.kc, TokenName)

	eventually(t, 5*time.Second, "not ready for want of a token", func() (bool, string) {
		code, body := get(r.HealthAddr(), "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "plug-in token"), body
	})
	p0 := r.passes.Load()
	eventually(t, 5*time.Second, "five more passes", func() (bool, string) { return r.passes.Load() >= p0+5, "" })
	if exists(tokPath) || exists(filepath.Join(n.kc, KubeconfigName)) {
		t.Fatal("token file or kubeconfig written without a token")
	}
	if c := strings.Count(r.logs.String(), "no valid plug-in token"); c != 1 {
		t.Errorf("the missing token was logged %d times, want once", c)
	}

	src.set("tok-A", nil)
	r.waitReady(t)
	readTok := func() string { b, _ := os.ReadFile(tokPath); return string(b) }
	if st, err := os.Stat(tokPath); err != nil || st.Mode().Perm() != 0o600 || readTok() != "tok-A" {
		t.Fatalf("token file %q (%v, %v), want tok-A 0600", readTok(), st, err)
	}

	n.rotate(t, "token-1", testCA) // the DaemonSet's own token rotates: not the plug-in's business
	must(t, os.WriteFile(tokPath, []byte("tampered"), 0o644))
	eventually(t, 5*time.Second, "tampered token file repaired", func() (bool, string) { return readTok() == "tok-A", readTok() })

	src.set("tok-B", nil)
	eventually(t, 5*time.Second, "refreshed token written", func() (bool, string) { return readTok() == "tok-B", readTok() })
	if c := r.counter("mesh_cni_token_refreshes_total"); c < 1 {
		t.Errorf("refreshes counted %v", c)
	}

	src.set("", errors.New("expired"))
	eventually(t, 5*time.Second, "not ready once the token expired", func() (bool, string) {
		code, body := get(r.HealthAddr(), "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "expired"), body
	})
	if readTok() != "tok-B" {
		t.Errorf("the token file changed while the source had no token: %q", readTok())
	}
}
