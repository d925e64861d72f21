package k8s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// MaxBodyBytes bounds a pod answer: far above any pod the API server
// stores (etcd's default request limit is 1.5 MiB), so a larger body is a
// broken or hostile server, never a pod.
const MaxBodyBytes = 4 << 20

// Client is a PodGetter over net/http: one GET of one pod, with what a
// kubeconfig says about the server and the credentials. It is not
// client-go on purpose: the plug-in is a new process per CNI call, and
// client-go's and apimachinery's package initialisation would be paid by
// every call, including those that never read a pod.
type Client struct {
	http  *http.Client
	base  *url.URL
	token string
}

// NewClient builds a client from a kubeconfig file, reading every file it
// names (so a broken kubeconfig fails here, before any request).
func NewClient(kubeconfig string, perRequest time.Duration) (*Client, error) {
	if kubeconfig == "" {
		return nil, fmt.Errorf("config key kubeconfig is empty: the plug-in needs it to read pods")
	}
	rc, err := loadKubeconfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	c, err := newClient(rc, perRequest)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

func newClient(rc *restConfig, perRequest time.Duration) (*Client, error) {
	tlsConf, err := tlsConfig(rc)
	if err != nil {
		return nil, err
	}
	proxy := http.ProxyFromEnvironment // as client-go does
	if rc.Proxy != nil {
		proxy = http.ProxyURL(rc.Proxy)
	}
	tr := &http.Transport{
		Proxy:               proxy,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: perRequest,
		MaxIdleConnsPerHost: 1,
	}
	return &Client{
		http:  &http.Client{Transport: tr, Timeout: perRequest},
		base:  rc.Server,
		token: rc.Token,
	}, nil
}

func tlsConfig(rc *restConfig) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: rc.ServerName, InsecureSkipVerify: rc.Insecure}
	if rc.CA != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(rc.CA) {
			return nil, errors.New("cluster certificate-authority holds no PEM certificate")
		}
		c.RootCAs = pool
	}
	if rc.HasClientCert {
		cert, err := tls.X509KeyPair(rc.CertPEM, rc.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("user client-certificate/client-key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// GetPod implements PodGetter. A non-2xx answer is an *APIError; a 2xx is
// decoded as it comes, and whether it is the pod asked for is the GetPod
// function's check.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*pod.Pod, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, podURL(c.base, namespace, name), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mesh-cni")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer for pod %s/%s: %w", namespace, name, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, newAPIError(resp.StatusCode, resp.Header, body)
	}
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("the answer for pod %s/%s exceeds %d bytes", namespace, name, MaxBodyBytes)
	}
	p, err := pod.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("decoding pod %s/%s: %w", namespace, name, err)
	}
	return p, nil
}

// podURL is the pod's path under the server's (which may have a prefix of
// its own, behind a proxy). The names are escaped as one segment each: a
// name can never reach another path.
func podURL(base *url.URL, namespace, name string) string {
	u := *base
	prefix, rawPrefix := strings.TrimSuffix(u.Path, "/"), strings.TrimSuffix(u.EscapedPath(), "/")
	u.Path = prefix + "/api/v1/namespaces/" + namespace + "/pods/" + name
	u.RawPath = rawPrefix + "/api/v1/namespaces/" + url.PathEscape(namespace) + "/pods/" + url.PathEscape(name)
	return u.String()
}
