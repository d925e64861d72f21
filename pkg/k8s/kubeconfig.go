package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// kubeconfig is the part of a kubeconfig file the plug-in reads. Fields it
// cannot honour are decoded only to be refused by name (see refused): a
// credential plug-in silently ignored would send the request anonymously.
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string  `json:"name"`
		Cluster cluster `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User user   `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

type cluster struct {
	Server                   string `json:"server"`
	TLSServerName            string `json:"tls-server-name"`
	CertificateAuthority     string `json:"certificate-authority"`
	CertificateAuthorityData []byte `json:"certificate-authority-data"`
	InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
	ProxyURL                 string `json:"proxy-url"`
}

type user struct {
	Token                 string `json:"token"`
	TokenFile             string `json:"tokenFile"`
	ClientCertificate     string `json:"client-certificate"`
	ClientCertificateData []byte `json:"client-certificate-data"`
	ClientKey             string `json:"client-key"`
	ClientKeyData         []byte `json:"client-key-data"`
	// Refused: decoded to be named in the error, never used.
	Exec         any      `json:"exec"`
	AuthProvider any      `json:"auth-provider"`
	Username     string   `json:"username"`
	Password     string   `json:"password"`
	As           string   `json:"as"`
	AsUID        string   `json:"as-uid"`
	AsGroups     []string `json:"as-groups"`
	AsUserExtra  any      `json:"as-user-extra"`
}

// restConfig is a kubeconfig resolved to what one GET needs: every file it
// names already read, so a broken kubeconfig fails before any request.
type restConfig struct {
	Server        *url.URL
	ServerName    string // TLS server name override
	CA            []byte // PEM; nil: the system roots
	Insecure      bool
	Proxy         *url.URL
	Token         string
	CertPEM       []byte
	KeyPEM        []byte
	HasClientCert bool
}

// loadKubeconfig reads the kubeconfig at path and the files it names.
// Relative file paths are relative to the kubeconfig's directory, as
// kubectl resolves them.
func loadKubeconfig(path string) (*restConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKubeconfig(data, filepath.Dir(path), os.ReadFile)
}

// parseKubeconfig resolves data's current context; readFile reads the
// files it names (relative to dir).
func parseKubeconfig(data []byte, dir string, readFile func(string) ([]byte, error)) (*restConfig, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("not a kubeconfig: %w", err)
	}
	cl, us, err := kc.current()
	if err != nil {
		return nil, err
	}
	if err := refused(us); err != nil {
		return nil, err
	}
	read := func(field, name string) ([]byte, error) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		b, err := readFile(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		return b, nil
	}
	rc := &restConfig{ServerName: cl.TLSServerName, Insecure: cl.InsecureSkipTLSVerify}
	if rc.Server, err = serverURL(cl.Server); err != nil {
		return nil, err
	}
	if cl.ProxyURL != "" {
		if rc.Proxy, err = url.Parse(cl.ProxyURL); err != nil {
			return nil, fmt.Errorf("cluster proxy-url: %w", err)
		}
	}
	if rc.CA, err = fileOrData(read, "cluster certificate-authority", cl.CertificateAuthority, cl.CertificateAuthorityData); err != nil {
		return nil, err
	}
	if rc.Insecure && rc.CA != nil {
		return nil, errors.New("cluster insecure-skip-tls-verify and certificate-authority are both set: choose one")
	}
	if rc.Token, err = token(read, us); err != nil {
		return nil, err
	}
	if rc.CertPEM, err = fileOrData(read, "user client-certificate", us.ClientCertificate, us.ClientCertificateData); err != nil {
		return nil, err
	}
	if rc.KeyPEM, err = fileOrData(read, "user client-key", us.ClientKey, us.ClientKeyData); err != nil {
		return nil, err
	}
	if (rc.CertPEM == nil) != (rc.KeyPEM == nil) {
		return nil, errors.New("user client-certificate and client-key must be given together")
	}
	rc.HasClientCert = rc.CertPEM != nil
	return rc, nil
}

// current finds the cluster and user of current-context.
func (kc *kubeconfig) current() (*cluster, *user, error) {
	if kc.CurrentContext == "" {
		return nil, nil, errors.New("current-context is not set")
	}
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("current-context %q names no entry of contexts", kc.CurrentContext)
	}
	var cl *cluster
	for i := range kc.Clusters {
		if kc.Clusters[i].Name == clusterName {
			cl = &kc.Clusters[i].Cluster
		}
	}
	if cl == nil {
		return nil, nil, fmt.Errorf("context %q: cluster %q names no entry of clusters", kc.CurrentContext, clusterName)
	}
	us := &user{} // a context without a user is anonymous, as kubectl reads it
	if userName != "" {
		us = nil
		for i := range kc.Users {
			if kc.Users[i].Name == userName {
				us = &kc.Users[i].User
			}
		}
		if us == nil {
			return nil, nil, fmt.Errorf("context %q: user %q names no entry of users", kc.CurrentContext, userName)
		}
	}
	return cl, us, nil
}

// refused names the first user field the plug-in does not implement. It
// fails rather than send the request without the credentials they mean.
func refused(u *user) error {
	for _, f := range []struct {
		key string
		set bool
	}{
		{"exec", u.Exec != nil},
		{"auth-provider", u.AuthProvider != nil},
		{"username", u.Username != ""},
		{"password", u.Password != ""},
		{"as", u.As != ""},
		{"as-uid", u.AsUID != ""},
		{"as-groups", len(u.AsGroups) > 0},
		{"as-user-extra", u.AsUserExtra != nil},
	} {
		if f.set {
			return fmt.Errorf("user %s is not supported by the mesh-cni plug-in: use token, tokenFile or a client certificate", f.key)
		}
	}
	return nil
}

func serverURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("cluster server is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("cluster server: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("cluster server %q: want an https:// (or http://) URL with a host and no query", s)
	}
	return u, nil
}

// fileOrData is the content of a "<field>" file or "<field>-data" value.
// Both set is refused: which one wins is a guess the reader should not make.
func fileOrData(read func(field, name string) ([]byte, error), field, file string, data []byte) ([]byte, error) {
	switch {
	case file != "" && len(data) > 0:
		return nil, fmt.Errorf("%s and %s-data are both set: choose one", field, field)
	case len(data) > 0:
		return data, nil
	case file != "":
		return read(field, file)
	}
	return nil, nil
}

// token is the bearer token: tokenFile, read now (each exec is a new
// process, so a rotated token is always the current one), else token.
// The file wins when both are set, as client-go's refreshing source does.
func token(read func(field, name string) ([]byte, error), u *user) (string, error) {
	if u.TokenFile == "" {
		return u.Token, nil
	}
	b, err := read("user tokenFile", u.TokenFile)
	if err != nil {
		return "", err
	}
	t := string(bytes.TrimSpace(b))
	if t == "" {
		return "", fmt.Errorf("user tokenFile %s is empty", u.TokenFile)
	}
	return t, nil
}
