package cnitest

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodServer is a read-only stand-in for the API server's pod GET: enough
// for client-go, with a request counter so tests can prove "no request".
type PodServer struct {
	*httptest.Server
	mu       sync.Mutex
	pods     map[string]*corev1.Pod
	Requests atomic.Int64
	// Fail, when set, makes every request answer with this HTTP status.
	Fail  atomic.Int32
	fault atomic.Pointer[faultState]
	done  chan struct{} // closed by Close: releases hanging handlers
}

// Fault is how the server misbehaves in place of serving the pod: the
// answers a broken, overloaded or impersonated API server gives.
type Fault struct {
	// Status answers with this HTTP status (0: 200).
	Status int
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Body, when set, is sent as the answer's JSON body in place of the pod
	// (with Status, or 200).
	Body []byte
	// Hang holds the request until the client gives up or the server closes.
	Hang bool
	// Times limits the fault to the first Times requests (0: every request).
	Times int64
}

type faultState struct {
	Fault
	seen atomic.Int64
}

// SetFault makes the server misbehave from now on (nil: behave again).
func (s *PodServer) SetFault(f *Fault) {
	if f == nil {
		s.fault.Store(nil)
		return
	}
	s.fault.Store(&faultState{Fault: *f})
}

// Close stops the server, releasing any request a Hang fault holds.
func (s *PodServer) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.Server.Close()
}

// misbehave answers r with the current fault, if any applies; it reports
// whether it did.
func (s *PodServer) misbehave(w http.ResponseWriter, r *http.Request) bool {
	f := s.fault.Load()
	if f == nil || (f.Times > 0 && f.seen.Add(1) > f.Times) {
		return false
	}
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return true
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	status := f.Status
	if status == 0 {
		status = http.StatusOK
	}
	if f.Body == nil {
		http.Error(w, "injected failure", status)
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(f.Body)
	return true
}

// NewPodServer serves the given pods on a loopback port of the current netns.
func NewPodServer(pods ...*corev1.Pod) *PodServer {
	s := newPodServer(pods)
	s.Server.Start()
	return s
}

// NewPodServerIn serves the pods on the loopback of the netns at path (a
// chain's node namespace, where the plug-in runs). The listening socket
// stays in that netns; the serving goroutines need not.
func NewPodServerIn(path string, pods ...*corev1.Pod) (*PodServer, error) {
	return podServerIn(path, false, pods)
}

// NewTLSPodServerIn is NewPodServerIn over HTTPS, as a real API server is;
// CAPEM gives the certificate a client must trust.
func NewTLSPodServerIn(path string, pods ...*corev1.Pod) (*PodServer, error) {
	return podServerIn(path, true, pods)
}

// CAPEM is the TLS server's self-signed certificate in PEM.
func (s *PodServer) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Server.Certificate().Raw})
}

func podServerIn(path string, tls bool, pods []*corev1.Pod) (*PodServer, error) {
	s := newPodServer(pods)
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		s.Server.Listener = ln
		return err
	})
	if err != nil {
		return nil, err
	}
	if tls {
		s.Server.StartTLS()
	} else {
		s.Server.Start()
	}
	return s, nil
}

func newPodServer(pods []*corev1.Pod) *PodServer {
	s := &PodServer{pods: map[string]*corev1.Pod{}, done: make(chan struct{})}
	for _, p := range pods {
		s.Put(p)
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	return s
}

// Put adds or replaces a pod.
func (s *PodServer) Put(p *corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods[p.Namespace+"/"+p.Name] = p
}

func (s *PodServer) serve(w http.ResponseWriter, r *http.Request) {
	s.Requests.Add(1)
	if code := s.Fail.Load(); code != 0 {
		http.Error(w, "injected failure", int(code))
		return
	}
	if s.misbehave(w, r) {
		return
	}
	// /api/v1/namespaces/NS/pods/NAME
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodGet || len(parts) != 6 || parts[0] != "api" || parts[2] != "namespaces" || parts[4] != "pods" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	pod, ok := s.pods[parts[3]+"/"+parts[5]]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: 404,
			Message: fmt.Sprintf("pods %q not found", parts[5]),
			Details: &metav1.StatusDetails{Name: parts[5], Kind: "pods"},
		})
		return
	}
	out := pod.DeepCopy()
	out.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
	_ = json.NewEncoder(w).Encode(out)
}

// KubeconfigName is the file WriteKubeconfig writes in its dir.
const KubeconfigName = "mesh-cni.kubeconfig"

// WriteKubeconfig writes a kubeconfig for this server into dir.
func (s *PodServer) WriteKubeconfig(dir string) (string, error) {
	return WriteKubeconfig(dir, s.URL)
}

// WriteKubeconfig writes into dir a kubeconfig for the API server at url
// (say, a port nothing listens on).
func WriteKubeconfig(dir, url string) (string, error) {
	path := filepath.Join(dir, KubeconfigName)
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
contexts:
- name: test
  context: {cluster: test, user: mesh-cni}
current-context: test
users:
- name: mesh-cni
  user: {token: test-token}
`, url)
	return path, os.WriteFile(path, []byte(kc), 0o600)
}
