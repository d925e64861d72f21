package installer

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshcni/mesh-cni/pkg/k8s"
)

// fakeAPI is a TLS API server that answers a pod GET only for the current
// bearer token.
type fakeAPI struct {
	*httptest.Server
	mu    sync.Mutex
	token string
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		want := "Bearer " + f.token
		f.mu.Unlock()
		if r.Header.Get("Authorization") != want {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`, http.StatusUnauthorized)
			return
		}
		pod := corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(pod)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) setToken(s string) { f.mu.Lock(); f.token = s; f.mu.Unlock() }

func (f *fakeAPI) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw}))
}

// getPodWith uses the written kubeconfig exactly as the plug-in does:
// pkg/k8s's client, a fresh process-like client each time.
func getPodWith(kubeconfig string) error {
	c, err := k8s.NewClient(kubeconfig, 2*time.Second)
	if err != nil {
		return err
	}
	_, err = c.GetPod(context.Background(), "ns", "p")
	return err
}

// TestTokenRotation: kubelet rotates the projected token several times; the
// kubeconfig keeps working with the newest token and readiness never drops.
func TestTokenRotation(t *testing.T) {
	api := newFakeAPI(t)
	n := newNode(t)
	api.setToken("token-0")
	n.rotate(t, "token-0", api.caPEM())
	n.write(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	r := start(t, n.config(t, "--kube-api-server="+api.URL))
	r.waitReady(t)

	kubeconfig := filepath.Join(n.kc, KubeconfigName)
	if err := getPodWith(kubeconfig); err != nil {
		t.Fatalf("plug-in kubeconfig does not work: %v", err)
	}
	kc, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if u := kc.AuthInfos[kc.Contexts[kc.CurrentContext].AuthInfo]; u.TokenFile != filepath.Join(n.kc, TokenName) || u.Token != "" {
		t.Fatalf("kubeconfig user: tokenFile=%q token=%q", u.TokenFile, u.Token)
	}
	kcBytes := mustRead(t, kubeconfig)

	// Watch readiness continuously while rotating.
	var drops atomic.Int64
	var probes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if code, _ := get(r.HealthAddr(), "/readyz"); code != http.StatusOK {
				drops.Add(1)
			}
			probes.Add(1)
		}
	}()
	for i := 1; i <= 5; i++ {
		tok := fmt.Sprintf("token-%d-%s", i, strings.Repeat("x", i))
		api.setToken(tok)
		n.rotate(t, tok, api.caPEM())
		eventually(t, 5*time.Second, "token copy refreshed", func() (bool, string) {
			b, _ := os.ReadFile(filepath.Join(n.kc, TokenName))
			return string(b) == tok, string(b)
		})
		if err := getPodWith(kubeconfig); err != nil {
			t.Fatalf("after rotation %d the kubeconfig fails: %v", i, err)
		}
		if m := mode(t, filepath.Join(n.kc, TokenName)); m != 0o600 {
			t.Errorf("token copy mode %v", m)
		}
	}
	p0 := probes.Load()
	eventually(t, 5*time.Second, "more probes", func() (bool, string) { return probes.Load() > p0+5, "" })
	close(stop)
	wg.Wait()
	if d := drops.Load(); d != 0 {
		t.Errorf("readiness dropped %d times out of %d probes during rotation", d, probes.Load())
	}
	if string(mustRead(t, kubeconfig)) != string(kcBytes) {
		t.Error("kubeconfig rewritten on token rotation (only the token copy should change)")
	}
	eventually(t, 5*time.Second, "5 token refreshes counted", func() (bool, string) {
		got := r.counter("mesh_cni_token_refreshes_total")
		return got == 5, fmt.Sprint(got)
	})

	// A CA change rewrites the kubeconfig.
	n.rotate(t, "token-x", testCA)
	eventually(t, 5*time.Second, "kubeconfig follows the CA", func() (bool, string) {
		return string(mustRead(t, kubeconfig)) != string(kcBytes), ""
	})
}

// TestServiceAccountMissing: without a token the installer is not ready and
// says why, and recovers when the volume appears.
func TestServiceAccountMissing(t *testing.T) {
	n := newNode(t)
	must(t, os.RemoveAll(n.sa))
	n.write(t, "10-calico.conflist", testdata(t, "calico/in/10-calico.conflist"))
	r := start(t, n.config(t))
	eventually(t, 5*time.Second, "not ready naming the token", func() (bool, string) {
		code, body := get(r.HealthAddr(), "/readyz")
		return code == 503 && strings.Contains(body, "service account token"), body
	})
	must(t, os.MkdirAll(n.sa, 0o755))
	n.rotate(t, "late-token", testCA)
	r.waitReady(t)
}
