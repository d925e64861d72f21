package installer

import (
	"encoding/json"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/meshcni/mesh-cni/pkg/config"
)

// TestEntryAcceptedByPlugin feeds the entry the installer writes, as libcni
// hands it to the plug-in (name and cniVersion injected from the list), to
// the plug-in's own config parser, for every setting the flags allow.
func TestEntryAcceptedByPlugin(t *testing.T) {
	base := testdata(t, "calico/in/10-calico.conflist")
	for _, args := range [][]string{
		nil,
		{"--failure-policy=Alert", "--exclude-namespaces=", "--iptables-backend=nft", "--plugin-log-level=debug"},
		{"--plugin-log-file=/var/log/mesh-cni.log", "--pod-lookup-timeout=1m30s", "--iptables-backend=legacy"},
		{`--redirect={"outboundPort":15001,"inboundPort":15006,"inboundTunnelPort":15008,"proxyUID":1337,"proxyGID":1337,"includeInboundPorts":"*","excludeInboundPorts":"22","includeOutboundIPRanges":"*","excludeOutboundIPRanges":"","includeOutboundPorts":"","excludeOutboundPorts":"","excludeInterfaces":""}`},
	} {
		c, err := ParseFlags(append([]string{"--kube-api-server=https://10.96.0.1:443"}, args...), func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		merged, err := InsertEntry([]byte(base), c.Entry())
		if err != nil {
			t.Fatal(err)
		}
		list, err := libcni.ConfListFromBytes(merged)
		if err != nil {
			t.Fatal(err)
		}
		last := list.Plugins[len(list.Plugins)-1]
		var m map[string]any
		if err := json.Unmarshal(last.Bytes, &m); err != nil {
			t.Fatal(err)
		}
		m["name"], m["cniVersion"] = list.Name, list.CNIVersion
		stdin, _ := json.Marshal(m)
		pc, err := config.Parse(stdin)
		if err != nil {
			t.Errorf("%v: the plug-in refuses the entry: %v\n%s", args, err, stdin)
			continue
		}
		if pc.Kubeconfig != c.KubeconfigHostPath() || string(pc.FailurePolicy) != c.FailurePolicy ||
			pc.PodLookupTimeout != c.PodLookupTimeout || pc.Pods.InstallerPodPrefix != c.InstallerPodPrefix ||
			pc.Pods.InstallerNamespace != c.InstallerNamespace || len(pc.Pods.ExcludeNamespaces) != len(c.ExcludeNamespaces) {
			t.Errorf("%v: the plug-in reads different settings: %+v", args, pc)
		}
	}
}
