// Package apitest runs a real etcd and kube-apiserver on free loopback ports
// for one test: static bearer tokens for the identities the test names,
// RBAC authorization, and an audit log of every request at Metadata level,
// so tests assert on what the API server recorded.
package apitest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// BinDir is where test/cluster/build-k8s.sh puts the Kubernetes binaries.
func BinDir() string {
	if d := os.Getenv("K8S_BIN_DIR"); d != "" {
		return d
	}
	return "/var/cache/mesh-cni/k8s-v1.37.2/bin"
}

// Missing says which binary is absent ("" when all are there): tests skip
// with it; `make test` builds them first (make k8s-binaries).
func Missing() string {
	if _, err := exec.LookPath("etcd"); err != nil {
		return "etcd (Debian etcd-server) is not installed"
	}
	if _, err := os.Stat(filepath.Join(BinDir(), "kube-apiserver")); err != nil {
		return "kube-apiserver not built in " + BinDir() + " (make k8s-binaries)"
	}
	return ""
}

// User is one identity with its bearer token.
type User struct {
	Name   string
	Groups []string
	Token  string
}

// Server is a running etcd + kube-apiserver.
type Server struct {
	URL     string
	Dir     string
	Users   map[string]*User
	procs   []*exec.Cmd
	apiArgs []string // to restart the API server alone
}

// AdminUser is in system:masters.
const AdminUser = "admin"

// Start runs etcd and kube-apiserver in dir with the named users (plus
// admin) and waits until the API server is ready. Stop ends both.
func Start(dir string, users ...string) (*Server, error) {
	s := &Server{Dir: dir, Users: map[string]*User{}}
	if err := s.start(users); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(users []string) error {
	etcdPort, peerPort, apiPort := freePort(), freePort(), freePort()
	etcd := exec.Command("etcd", "--name", "apitest", "--data-dir", filepath.Join(s.Dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:"+etcdPort, "--advertise-client-urls", "http://127.0.0.1:"+etcdPort,
		"--listen-peer-urls", "http://127.0.0.1:"+peerPort, "--initial-advertise-peer-urls", "http://127.0.0.1:"+peerPort,
		"--initial-cluster", "apitest=http://127.0.0.1:"+peerPort, "--log-level", "error")
	if err := s.run(etcd, "etcd.log"); err != nil {
		return err
	}
	if err := s.writeFiles(append([]string{AdminUser}, users...)); err != nil {
		return err
	}
	s.apiArgs = []string{
		"--etcd-servers", "http://127.0.0.1:" + etcdPort,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", apiPort,
		"--cert-dir", filepath.Join(s.Dir, "certs"),
		"--token-auth-file", filepath.Join(s.Dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(s.Dir, "sa.pem"),
		"--service-account-signing-key-file", filepath.Join(s.Dir, "sa.pem"),
		"--service-cluster-ip-range", "10.254.0.0/24",
		"--disable-admission-plugins", "ServiceAccount",
		"--endpoint-reconciler-type", "none",
		"--audit-policy-file", filepath.Join(s.Dir, "audit-policy.yaml"),
		"--audit-log-path", s.AuditLogPath(), "--audit-log-mode", "blocking",
		"--profiling=false"}
	s.URL = "https://127.0.0.1:" + apiPort
	return s.StartAPIServer()
}

// StartAPIServer (re)starts kube-apiserver with the same flags, port and
// etcd, and waits until it is ready.
func (s *Server) StartAPIServer() error {
	api := exec.Command(filepath.Join(BinDir(), "kube-apiserver"), s.apiArgs...)
	if err := s.run(api, fmt.Sprintf("kube-apiserver-%d.log", len(s.procs))); err != nil {
		return err
	}
	return s.waitReady(90 * time.Second)
}

// StopAPIServer stops kube-apiserver alone (etcd keeps the data).
func (s *Server) StopAPIServer() {
	for i := len(s.procs) - 1; i >= 1; i-- {
		stop(s.procs[i])
	}
	s.procs = s.procs[:1]
}

func stop(p *exec.Cmd) {
	_ = p.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.Process.Kill()
		<-done
	}
}

func (s *Server) run(cmd *exec.Cmd, logName string) error {
	f, err := os.Create(filepath.Join(s.Dir, logName))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	f.Close()
	s.procs = append(s.procs, cmd)
	return nil
}

func (s *Server) writeFiles(users []string) error {
	var tokens strings.Builder
	for i, name := range users {
		u := &User{Name: name, Token: randHex(16)}
		if name == AdminUser {
			u.Groups = []string{"system:masters"}
		}
		s.Users[name] = u
		fmt.Fprintf(&tokens, "%s,%s,uid-%d,\"%s\"\n", u.Token, u.Name, i, strings.Join(u.Groups, ","))
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})...)
	policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
	for name, data := range map[string][]byte{
		"tokens.csv": []byte(tokens.String()), "sa.pem": pemData, "audit-policy.yaml": []byte(policy),
	} {
		if err := os.WriteFile(filepath.Join(s.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) waitReady(limit time.Duration) error {
	c := s.HTTPClient(AdminUser)
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range s.procs {
			if p.ProcessState != nil {
				return fmt.Errorf("%s exited; see %s", p.Path, s.Dir)
			}
		}
		resp, err := c.Get(s.URL + "/readyz")
		if err == nil {
			b := make([]byte, 512)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = string(b[:n])
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %s (logs in %s)", limit, last, s.Dir)
}

// Stop kills both processes and waits for them.
func (s *Server) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		stop(s.procs[i])
	}
	s.procs = nil
}

// HTTPClient authenticates as user (the serving cert is self-signed, on
// loopback).
func (s *Server) HTTPClient(user string) *http.Client {
	return s.TokenClient(s.Users[user].Token)
}

// TokenClient authenticates with a bearer token (e.g. a service account
// token the API server issued).
func (s *Server) TokenClient(tok string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: bearer{tok, &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test server on loopback
	}}}
}

type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}

// WriteKubeconfig writes a kubeconfig for user and returns its path.
func (s *Server) WriteKubeconfig(dir, user string) (string, error) {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: apitest
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: %s
  user: {token: %q}
contexts:
- name: apitest
  context: {cluster: apitest, user: %s}
current-context: apitest
`, s.URL, user, s.Users[user].Token, user)
	p := filepath.Join(dir, user+".kubeconfig")
	return p, os.WriteFile(p, []byte(kc), 0o600)
}

// Do sends a request as user with a JSON body (nil: none) and decodes the
// answer into out (nil: discarded). A status >= 300 is an error.
func (s *Server) Do(ctx context.Context, user, method, path string, body, out any) error {
	return s.DoToken(ctx, s.Users[user].Token, method, path, body, out)
}

// StatusError is a status >= 300 answered by the API server.
type StatusError struct {
	Method, Path string
	Code         int
	Body         string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d: %s", e.Method, e.Path, e.Code, e.Body)
}

// Code is the HTTP status of err (0: not an answer of the API server).
func Code(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// DoToken is Do with a bearer token instead of a named user.
func (s *Server) DoToken(ctx context.Context, token, method, path string, body, out any) error {
	var rd *strings.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.TokenClient(token).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		return &StatusError{Method: method, Path: path, Code: resp.StatusCode, Body: b.String()}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// ServingCA is the trust bundle of the API server's self-signed serving
// certificate (the certificate and the CA it generated), for clients that
// verify TLS like the plug-in does.
func (s *Server) ServingCA() ([]byte, error) {
	return os.ReadFile(filepath.Join(s.Dir, "certs", "apiserver.crt"))
}

// AuditLogPath is the API server's audit log (JSON lines).
func (s *Server) AuditLogPath() string { return filepath.Join(s.Dir, "audit.log") }

// AuditEvent is the part of an audit.k8s.io/v1 Event the tests read.
type AuditEvent struct {
	Stage     string `json:"stage"`
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// Audit reads the audit log's completed requests matching keep.
func (s *Server) Audit(keep func(AuditEvent) bool) ([]AuditEvent, error) {
	f, err := os.Open(s.AuditLogPath())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev AuditEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Stage != "ResponseComplete" {
			continue
		}
		if keep(ev) {
			out = append(out, ev)
		}
	}
	return out, sc.Err()
}

// PodGets counts GETs of pods by user recorded so far.
func (s *Server) PodGets(user string) (int, error) {
	evs, err := s.Audit(func(e AuditEvent) bool {
		return e.User.Username == user && e.Verb == "get" && e.ObjectRef != nil && e.ObjectRef.Resource == "pods"
	})
	return len(evs), err
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
