package k8s

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshcni/mesh-cni/pkg/installer"
)

// TestKubeconfigRefused: what the plug-in cannot honour or cannot tell
// apart fails NewClient with the field named, before any request.
func TestKubeconfigRefused(t *testing.T) {
	dir := t.TempDir()
	ca := base64.StdEncoding.EncodeToString([]byte("x"))
	for _, c := range []struct {
		cluster, user, want string
	}{
		{"server: https://h", "exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}", "user exec is not supported"},
		{"server: https://h", "auth-provider: {name: gcp}", "user auth-provider is not supported"},
		{"server: https://h", "username: a\npassword: b", "user username is not supported"},
		{"server: https://h", "as: admin", "user as is not supported"},
		{"server: https://h", "as-groups: [system:masters]", "user as-groups is not supported"},
		{"server: https://h", "tokenFile: /nonexistent/token", "user tokenFile: open /nonexistent/token"},
		{"server: https://h", "tokenFile: " + filepath.Join(dir, "empty"), "user tokenFile " + filepath.Join(dir, "empty") + " is empty"},
		{"server: https://h", "client-certificate: /nonexistent/c.crt\nclient-key: /nonexistent/c.key", "user client-certificate: open /nonexistent/c.crt"},
		{"server: https://h", "client-certificate-data: " + ca, "client-certificate and client-key must be given together"},
		{"server: https://h", "client-certificate-data: " + ca + "\nclient-key-data: " + ca, "user client-certificate/client-key"},
		{"server: https://h\ncertificate-authority: /nonexistent/ca.crt", "", "cluster certificate-authority: open /nonexistent/ca.crt"},
		{"server: https://h\ncertificate-authority: ca.crt\ncertificate-authority-data: " + ca, "", "certificate-authority and cluster certificate-authority-data are both set"},
		{"server: https://h\ncertificate-authority-data: " + ca, "", "certificate-authority holds no PEM certificate"},
		{"server: https://h\ncertificate-authority-data: " + ca + "\ninsecure-skip-tls-verify: true", "", "insecure-skip-tls-verify and certificate-authority are both set"},
		{"server: \"\"", "", "cluster server is empty"},
		{"server: h:6443", "", "want an https://"},
		{"server: ftp://h", "", "want an https://"},
		{"server: https://h?x=1", "", "no query"},
		{"server: https://h\nproxy-url: \"http://[::1\"", "", "cluster proxy-url"},
	} {
		_ = os.WriteFile(filepath.Join(dir, "empty"), []byte(" \n"), 0o600)
		kc := writeKC(t, dir, c.cluster, c.user)
		_, err := NewClient(kc, 0)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), kc) {
			t.Errorf("%q / %q: %v, want %q", c.cluster, c.user, err, c.want)
		}
	}
}

// TestKubeconfigContexts: current-context picks the cluster and user; a
// broken reference is named.
func TestKubeconfigContexts(t *testing.T) {
	read := func(string) ([]byte, error) { return nil, os.ErrNotExist }
	for _, c := range []struct{ kc, want string }{
		{``, "current-context is not set"},
		{`current-context: x`, `current-context "x" names no entry of contexts`},
		{"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]", `cluster "c" names no entry of clusters`},
		{"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]", `user "u" names no entry of users`},
		{"\x00\x01 not: [a kubeconfig", "not a kubeconfig"},
		{"- a list", "not a kubeconfig"},
	} {
		if _, err := parseKubeconfig([]byte(c.kc), "/", read); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.kc, err, c.want)
		}
	}
	rc, err := parseKubeconfig([]byte("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'https://h:6443/prefix', tls-server-name: kubernetes}}]"), "/", read)
	if err != nil || rc.Server.Host != "h:6443" || rc.Token != "" || rc.ServerName != "kubernetes" {
		t.Fatalf("a context without a user: %+v, %v", rc, err)
	}
}

// TestInstallerKubeconfig: the kubeconfig install-cni writes (inline CA,
// tokenFile) reads as it means.
func TestInstallerKubeconfig(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "mesh-cni-token")
	_ = os.WriteFile(tf, []byte("sa-token"), 0o600)
	kc := installerKubeconfig(tf, []byte("PEM"))
	rc, err := parseKubeconfig([]byte(kc), dir, os.ReadFile)
	if err != nil || rc.Server.String() != "https://10.96.0.1:443" || string(rc.CA) != "PEM" || rc.Token != "sa-token" || rc.Insecure {
		t.Fatalf("%+v, %v", rc, err)
	}
}

// FuzzKubeconfig: any file never panics the parser, and what it accepts
// is an http(s) server with a host, with no credential plug-in silently
// dropped and never both a file and its -data.
func FuzzKubeconfig(f *testing.F) {
	f.Add([]byte(installerKubeconfig("/t", []byte("PEM"))))
	f.Add([]byte("apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: test\n  context: {cluster: test, user: mesh-cni}\ncurrent-context: test\nusers:\n- name: mesh-cni\n  user: {token: test-token}\n"))
	f.Add([]byte("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {exec: {command: x}}}]"))
	f.Add([]byte("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'https://h/p', insecure-skip-tls-verify: true, proxy-url: 'socks5://p:1'}}]"))
	read := func(name string) ([]byte, error) { return []byte("file:" + name), nil }
	f.Fuzz(func(t *testing.T, data []byte) {
		rc, err := parseKubeconfig(data, "/d", read)
		if err != nil {
			return
		}
		if (rc.Server.Scheme != "https" && rc.Server.Scheme != "http") || rc.Server.Host == "" {
			t.Fatalf("accepted server %v", rc.Server)
		}
		if rc.Insecure && rc.CA != nil {
			t.Fatal("accepted insecure with a CA")
		}
		var kc kubeconfig
		if yamlErr := parseAgain(data, &kc); yamlErr == nil {
			if _, us, err := kc.current(); err == nil && refused(us) != nil {
				t.Fatal("accepted a refused user field")
			}
		}
	})
}

// installerKubeconfig is what install-cni writes.
func installerKubeconfig(tokenFile string, ca []byte) string {
	b, err := installer.BuildKubeconfig("https://10.96.0.1:443", ca, tokenFile)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func parseAgain(data []byte, kc *kubeconfig) error { return yaml.Unmarshal(data, kc) }
