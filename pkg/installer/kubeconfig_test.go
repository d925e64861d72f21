package installer

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestBuildKubeconfigParses(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n")
	dir := t.TempDir()
	for _, name := range []string{"mesh-cni-token", `odd "name": #x`} {
		tokenFile := filepath.Join(dir, name)
		must(t, os.WriteFile(tokenFile, []byte("tok"), 0o600))
		b, err := BuildKubeconfig("https://[fd00::1]:443", ca, tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.Load(b)
		if err != nil {
			t.Fatalf("clientcmd cannot load it: %v\n%s", err, b)
		}
		rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		if rc.Host != "https://[fd00::1]:443" || string(rc.CAData) != string(ca) || rc.BearerTokenFile != tokenFile || rc.BearerToken != "tok" {
			t.Errorf("round trip: host=%q ca=%q tokenFile=%q token=%q", rc.Host, rc.CAData, rc.BearerTokenFile, rc.BearerToken)
		}
	}
	if _, err := BuildKubeconfig("", ca, "/t"); err == nil {
		t.Error("empty server accepted")
	}
}
