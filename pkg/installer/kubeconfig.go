package installer

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Token rotation strategy: the plug-in kubeconfig never embeds the token. Its
// user entry has `tokenFile:` pointing at a host-side file (TokenName next
// to the kubeconfig) holding the plug-in's token: with Config.PluginToken the
// plug-in's own service account token (pkg/plugintoken mints and refreshes
// it; Changed wakes the installer), else a copy of the projected service
// account token, as described next. The installer
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
// inline, and the user's token as a tokenFile reference (host path). Strings
// are written JSON-quoted, which YAML reads as double-quoted scalars.
func BuildKubeconfig(server string, ca []byte, tokenFile string) ([]byte, error) {
	if server == "" || len(ca) == 0 || tokenFile == "" {
		return nil, errors.New("kubeconfig needs a server, a CA and a token file")
	}
	q := func(s string) string { return string(marshalString(s)) }
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Written by mesh-cni install-cni for the mesh-cni CNI plug-in; rewritten when
# it drifts. The token file it names is refreshed on every token rotation.
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: mesh-cni
  user:
    tokenFile: %s
contexts:
- name: mesh-cni
  context:
    cluster: local
    user: mesh-cni
current-context: mesh-cni
`, q(server), q(base64.StdEncoding.EncodeToString(ca)), q(tokenFile))
	return b.Bytes(), nil
}
