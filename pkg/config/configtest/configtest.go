// Package configtest builds network configs for tests.
package configtest

import "fmt"

// Conf is a mesh-cni netconf of the given version; extra is spliced in
// after the standard keys (start it with a comma).
func Conf(version, extra string) string {
	return fmt.Sprintf(`{"cniVersion": %q, "name": "k8s-pod-network", "type": "mesh-cni"%s}`, version, extra)
}

// PrevResult is a bridge-like result in the given version.
func PrevResult(version string) string {
	ipVersion := ""
	if version < "1.0.0" {
		ipVersion = `"version": "4", `
	}
	return fmt.Sprintf(`{"cniVersion": %q,
		"interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"}],
		"ips": [{%s"interface": 0, "address": "198.18.0.5/24", "gateway": "198.18.0.1"}]}`, version, ipVersion)
}
