package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshcni/mesh-cni/pkg/config/configtest"
)

// FuzzParse: no input panics; a rejected input that is a JSON object gets
// an error naming one of its keys (or a key it lacks a partner for); an
// accepted one is a config the plug-in can run with.
func FuzzParse(f *testing.F) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		f.Add([]byte(configtest.Conf(v, `,"prevResult":`+configtest.PrevResult(v))))
	}
	// The entry install-cni writes into a conflist, as the runtime hands it over.
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"mesh-cni","kubeconfig":"/etc/cni/net.d/mesh-cni-kubeconfig","excludeNamespaces":["kube-system","istio-system"],"failurePolicy":"Block","podLookupTimeout":"30s","iptablesBackend":"auto","logLevel":"info","installerNamespace":"mesh-cni-system","installerPodPrefix":"mesh-cni-node-"}`))
	f.Add([]byte(configtest.Conf("1.0.0", `,
		"kubeconfig": "/etc/cni/net.d/mesh-cni-kubeconfig", "failurePolicy": "Alert", "podLookupTimeout": "5s",
		"iptablesBackend": "legacy", "logLevel": "debug", "logFile": "/var/log/mesh-cni.log",
		"redirect": {"outboundPort": 15101, "proxyUID": 2000, "excludeInboundPorts": "22,2222", "excludeOutboundIPRanges": "169.254.169.254/32",
		             "includeOutboundIPRanges": "*", "excludeInterfaces": "eth1", "includeInboundPorts": "9080"}`)))
	f.Add([]byte(configtest.Conf("1.1.0", `,"cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}]`)))
	f.Add([]byte(configtest.Conf("1.0.0", `,"redirect": {"outboundPort": 70000}`)))
	f.Add([]byte(configtest.Conf("1.0.0", `,"prevResult": {"cniVersion": "1.0.0", "ips": "x"}`)))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Parse(in)
		if err == nil {
			if c.FailurePolicy != Block && c.FailurePolicy != Alert || c.PodLookupTimeout <= 0 || c.Node.Validate() != nil {
				t.Fatalf("accepted an unusable config: %+v", c)
			}
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(in, &obj) != nil {
			if !strings.HasPrefix(err.Error(), "parsing network config") {
				t.Fatalf("not a JSON object, and the error does not say so: %v", err)
			}
			return
		}
		msg := strings.ToLower(err.Error())
		for k := range obj {
			if k != "" && strings.Contains(msg, strings.ToLower(k)) {
				return
			}
		}
		t.Fatalf("the error names none of the keys of %s: %v", bytes.TrimSpace(in), err)
	})
}
