package installer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Token rotation strategy: the plug-in kubeconfig never embeds the token. Its
// user entry has `tokenFile:` pointing at a host-side copy of the projected
// service account token (TokenName next to the kubeconfig). The installer
// watches the service account directory (kubelet swaps its `..data` symlink
// on every rotation) and replaces the copy atomically whenever the token's
// content changes, with a periodic check as a backstop. The kubeconfig itself
// only changes when the API server address or the CA change, so a rotation
// never leaves a moment without a valid kubeconfig or token, and readiness
// does not flicker. client-go re-reads a tokenFile (and the plug-in is a new
// process per CNI call anyway), so the plug-in always uses the newest token.

// ServiceAccount is what the installer takes from its projected volume.
type ServiceAccount struct {
	Token []byte
	CA    []byte
}

// ReadServiceAccount reads token and ca.crt from dir (following kubelet's
// `..data` symlinks).
func ReadServiceAccount(dir string) (ServiceAccount, error) {
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		return ServiceAccount{}, fmt.Errorf("service account token: %w", err)
	}
	if len(bytes.TrimSpace(token)) == 0 {
		return ServiceAccount{}, fmt.Errorf("service account token %s is empty", filepath.Join(dir, "token"))
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return ServiceAccount{}, fmt.Errorf("service account CA: %w", err)
	}
	if len(bytes.TrimSpace(ca)) == 0 {
		return ServiceAccount{}, errors.New("service account ca.crt is empty")
	}
	return ServiceAccount{Token: token, CA: ca}, nil
}

// BuildKubeconfig renders the plug-in kubeconfig: the API server, the CA
// inline, and the user's token as a tokenFile reference (host path).
func BuildKubeconfig(server string, ca []byte, tokenFile string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["mesh-cni"] = &clientcmdapi.AuthInfo{TokenFile: tokenFile}
	cfg.Contexts["mesh-cni"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "mesh-cni"}
	cfg.CurrentContext = "mesh-cni"
	return clientcmd.Write(*cfg)
}
