package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

const podJSON = `{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"ns","name":"p","uid":"u1","annotations":{"a":"b"}}}`

// apiServer records what each request carried and answers with handle.
type apiServer struct {
	*httptest.Server
	mu     sync.Mutex
	seen   []*http.Request
	handle func(w http.ResponseWriter, r *http.Request)
}

func newAPI(t *testing.T, tlsOn bool, handle func(w http.ResponseWriter, r *http.Request)) *apiServer {
	return newAPIWith(t, tlsOn, nil, handle)
}

func newAPIWith(t *testing.T, tlsOn bool, conf *tls.Config, handle func(w http.ResponseWriter, r *http.Request)) *apiServer {
	s := &apiServer{handle: handle}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Clone(context.Background()))
		s.mu.Unlock()
		s.handle(w, r)
	}))
	s.TLS = conf
	s.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // refused handshakes are the point
	if tlsOn {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.seen...)
}

func servePod(w http.ResponseWriter, r *http.Request) {
	if r.URL.EscapedPath() != "/api/v1/namespaces/ns/pods/p" {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"wrong path `+r.URL.Path+`"}`, 404)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(podJSON))
}

func (s *apiServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// writeKC writes a kubeconfig whose current context uses the cluster and
// user YAML given (indented under "cluster:" and "user:").
func writeKC(t *testing.T, dir, clusterYAML, userYAML string) string {
	t.Helper()
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: "https://other.invalid"}
- name: c
  cluster:
%s
users:
- name: other
  user: {token: wrong-user}
- name: u
  user:
%s
contexts:
- name: other
  context: {cluster: other, user: other}
- name: mine
  context: {cluster: c, user: u}
current-context: mine
`, indent(clusterYAML), indent(userYAML))
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func indent(s string) string {
	if s == "" {
		return "    {}"
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = "    " + lines[i]
	}
	return strings.Join(lines, "\n")
}

func get(t *testing.T, kc string) (*pod.Pod, error) {
	t.Helper()
	c, err := NewClient(kc, 2*time.Second)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c.GetPod(context.Background(), "ns", "p")
}

// TestTLSWithCAFile: the server is verified against the CA file (relative
// to the kubeconfig), the token goes along, and the request is the one
// GET the plug-in makes.
func TestTLSWithCAFile(t *testing.T) {
	s := newAPI(t, true, servePod)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), s.caPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := writeKC(t, dir, "server: "+s.URL+"\ncertificate-authority: ca.crt", "token: tok-1")
	p, err := get(t, kc)
	if err != nil || p.Metadata.Annotations["a"] != "b" || p.Metadata.UID != "u1" {
		t.Fatalf("%+v, %v", p, err)
	}
	r := s.requests()[0]
	if r.Method != "GET" || r.Header.Get("Authorization") != "Bearer tok-1" || r.Header.Get("Accept") != "application/json" ||
		r.Header.Get("User-Agent") != "mesh-cni" || r.TLS == nil {
		t.Fatalf("request: %s %v tls=%v", r.Method, r.Header, r.TLS != nil)
	}
}

// TestTLSRefusesUnknownServer: without the CA (system roots), with another
// CA, the server's certificate is refused and no pod is read; with
// insecure-skip-tls-verify it is accepted (the admin asked for it).
func TestTLSRefusesUnknownServer(t *testing.T) {
	s := newAPI(t, true, servePod)
	anotherCA, _, _ := clientCert(t) // httptest's servers share one certificate
	dir := t.TempDir()
	otherCA := base64.StdEncoding.EncodeToString(anotherCA)
	for name, cl := range map[string]string{
		"system roots": "server: " + s.URL,
		"another CA":   "server: " + s.URL + "\ncertificate-authority-data: " + otherCA,
	} {
		_, err := get(t, writeKC(t, dir, cl, "token: t"))
		var uerr x509.UnknownAuthorityError
		var verr *tls.CertificateVerificationError
		if !errors.As(err, &uerr) && !errors.As(err, &verr) {
			t.Errorf("%s: %v", name, err)
		}
		if classify(err) != retry {
			t.Errorf("%s: a TLS failure is a network error, retried", name)
		}
	}
	if _, err := get(t, writeKC(t, dir, "server: "+s.URL+"\ninsecure-skip-tls-verify: true", "token: t")); err != nil {
		t.Fatal(err)
	}
}

// TestTokenFileReadPerClient: the token file is read by every NewClient
// (every exec), so a rotated token is used at once; whitespace around it
// is not part of it.
func TestTokenFileReadPerClient(t *testing.T) {
	s := newAPI(t, false, servePod)
	dir := t.TempDir()
	tf := filepath.Join(dir, "token")
	kc := writeKC(t, dir, "server: "+s.URL, "tokenFile: "+tf+"\ntoken: static-loses")
	for i, tok := range []string{"first", "second"} {
		if err := os.WriteFile(tf, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := get(t, kc); err != nil {
			t.Fatal(err)
		}
		if got := s.requests()[i].Header.Get("Authorization"); got != "Bearer "+tok {
			t.Fatalf("exec %d sent %q", i, got)
		}
	}
}

// TestClientCertificate: a client certificate (file or -data) is presented
// and the server, which requires one, sees it.
func TestClientCertificate(t *testing.T) {
	certPEM, keyPEM, pool := clientCert(t)
	s := newAPIWith(t, true, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, servePod)
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "c.crt"), certPEM, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "c.key"), keyPEM, 0o600)
	ca := "server: " + s.URL + "\ncertificate-authority-data: " + base64.StdEncoding.EncodeToString(s.caPEM())
	b64 := base64.StdEncoding.EncodeToString
	for name, us := range map[string]string{
		"files": "client-certificate: " + filepath.Join(dir, "c.crt") + "\nclient-key: c.key",
		"data":  "client-certificate-data: " + b64(certPEM) + "\nclient-key-data: " + b64(keyPEM),
	} {
		if _, err := get(t, writeKC(t, dir, ca, us)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r := s.requests()[len(s.requests())-1]
		if len(r.TLS.PeerCertificates) != 1 || r.TLS.PeerCertificates[0].Subject.CommonName != "system:node:test" {
			t.Fatalf("%s: the server saw %v", name, r.TLS.PeerCertificates)
		}
	}
	// Without it, the handshake fails: no pod.
	if _, err := get(t, writeKC(t, dir, ca, "token: t")); err == nil {
		t.Fatal("a server requiring a client certificate served a client without one")
	}
}

func clientCert(t *testing.T) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "system:node:test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), pool
}

// TestStatusClasses: every HTTP answer is classified as the lookup loop
// needs it, and a Status body's message reaches the error.
func TestStatusClasses(t *testing.T) {
	cases := []struct {
		code  int
		body  string
		class class
		text  string
	}{
		{404, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"p\" not found","reason":"NotFound","code":404}`, notFound, `pods "p" not found`},
		{404, `<html>page not found</html>`, notFound, "page not found"},
		{401, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`, final, "Unauthorized"},
		{403, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"p\" is forbidden: User \"x\" cannot get resource","reason":"Forbidden","code":403}`, final, `cannot get resource`},
		{400, `bad`, final, "bad"},
		{405, ``, final, "405 Method Not Allowed"},
		{406, ``, final, "406 Not Acceptable"},
		{429, `{"kind":"Status","message":"too many requests, please try again later"}`, retry, "please try again later"},
		{500, `{"kind":"Status","message":"etcdserver: request timed out"}`, retry, "etcdserver: request timed out"},
		{502, `bad gateway`, retry, "502 Bad Gateway: bad gateway"},
		{503, ``, retry, "503"},
		{504, ``, retry, "504"},
		{409, ``, retry, "409"},
		{302, ``, retry, "302"},
	}
	for _, c := range cases {
		s := newAPI(t, false, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(c.code)
			_, _ = w.Write([]byte(c.body))
		})
		_, err := get(t, writeKC(t, t.TempDir(), "server: "+s.URL, ""))
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != c.code || classify(err) != c.class || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%d %q: %v (class %d, want %d)", c.code, c.body, err, classify(err), c.class)
		}
	}
}

// TestRetryAfter: the header is read on 429 and 5xx only, as seconds or a
// date; garbage is no wait.
func TestRetryAfter(t *testing.T) {
	for _, c := range []struct {
		code   int
		header string
		want   time.Duration
	}{
		{429, "2", 2 * time.Second},
		{503, "1", time.Second},
		{500, "3", 3 * time.Second},
		{403, "5", 0},
		{429, "-1", 0},
		{429, "soon", 0},
		{429, "99999999999999", 0},
		{429, time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0},
	} {
		s := newAPI(t, false, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", c.header)
			w.WriteHeader(c.code)
		})
		_, err := get(t, writeKC(t, t.TempDir(), "server: "+s.URL, ""))
		if got := retryAfter(err); got != c.want {
			t.Errorf("%d Retry-After %q: %s, want %s", c.code, c.header, got, c.want)
		}
	}
	date := parseRetryAfter(time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat))
	if date < 28*time.Second || date > 30*time.Second {
		t.Errorf("an HTTP date 30s ahead: %s", date)
	}
}

// TestRetryAfterInTheLoop: GetPod waits what the server asks before asking
// again, and gives up at once when that is past the budget.
func TestRetryAfterInTheLoop(t *testing.T) {
	var calls int
	s := newAPI(t, false, func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			return
		}
		servePod(w, r)
	})
	c, err := NewClient(writeKC(t, t.TempDir(), "server: "+s.URL, ""), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := Retry{Budget: 3 * time.Second, PerRequest: time.Second, Backoff: time.Millisecond, MaxBackoff: time.Millisecond}
	start := time.Now()
	if _, err := GetPod(context.Background(), c, ref, r, log); err != nil || calls != 2 {
		t.Fatalf("%v after %d calls", err, calls)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("asked again after %s, before the server's Retry-After: 1", waited)
	}
	calls = 0
	r.Budget = 500 * time.Millisecond
	_, err = GetPod(context.Background(), c, ref, r, log)
	if !errors.Is(err, ErrUnavailable) || calls != 1 || !strings.Contains(err.Error(), "retry after 1s") {
		t.Fatalf("a Retry-After past the budget: %v after %d calls", err, calls)
	}
}

// TestGarbageBodies: a 200 that is not a pod never decodes into one the
// identity check accepts; a body past MaxBodyBytes is not read whole.
func TestGarbageBodies(t *testing.T) {
	huge := `{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"ns","name":"p","uid":"u1","annotations":{"a":"` +
		strings.Repeat("x", MaxBodyBytes) + `"}}}`
	for name, body := range map[string]string{
		"empty":     ``,
		"truncated": podJSON[:40],
		"html":      `<html>hello</html>`,
		"array":     `[1,2,3]`,
		"null":      `null`,
		"oversize":  huge,
		"binary":    "\x00\xff\xfe{",
	} {
		s := newAPI(t, false, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(body)) })
		p, err := get(t, writeKC(t, t.TempDir(), "server: "+s.URL, ""))
		if err == nil {
			err = pod.CheckIdentity(p, ref)
		}
		if err == nil || classify(err) != retry {
			t.Errorf("%s: %v", name, err)
		}
		if name == "oversize" && !strings.Contains(err.Error(), "exceeds") {
			t.Errorf("oversize: %v", err)
		}
	}
	// The same size less the padding is a pod: the bound is not lower than promised.
	fits := strings.Replace(huge, strings.Repeat("x", 200), "", 1)
	s := newAPI(t, false, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(fits)) })
	if _, err := get(t, writeKC(t, t.TempDir(), "server: "+s.URL, "")); err != nil {
		t.Fatalf("a pod just under %d bytes: %v", MaxBodyBytes, err)
	}
}

// TestPathEscaping: names are one path segment each, under the server's
// own path prefix.
func TestPathEscaping(t *testing.T) {
	s := newAPI(t, false, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	c, err := NewClient(writeKC(t, t.TempDir(), "server: "+s.URL+"/k8s/clusters/c-1/", ""), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.GetPod(context.Background(), "ns", "../../secrets/x")
	_, _ = c.GetPod(context.Background(), "ns", "p")
	got := []string{s.requests()[0].RequestURI, s.requests()[1].RequestURI}
	want := []string{"/k8s/clusters/c-1/api/v1/namespaces/ns/pods/..%2F..%2Fsecrets%2Fx", "/k8s/clusters/c-1/api/v1/namespaces/ns/pods/p"}
	if got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("paths %q, want %q", got, want)
	}
}

// TestPerRequestTimeoutOverHTTP: a server that never answers is cut at the
// client's per-request timeout, as a retried error.
func TestPerRequestTimeoutOverHTTP(t *testing.T) {
	release := make(chan struct{})
	s := newAPI(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	c, err := NewClient(writeKC(t, t.TempDir(), "server: "+s.URL, ""), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetPod(context.Background(), "ns", "p")
	if err == nil || classify(err) != retry {
		t.Fatalf("%v", err)
	}
}
