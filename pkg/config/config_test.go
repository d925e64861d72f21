package config

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/config/configtest"
	"github.com/meshcni/mesh-cni/pkg/nat"
)

func TestParseEveryVersion(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			c, err := Parse([]byte(configtest.Conf(v, `,"prevResult":`+configtest.PrevResult(v))))
			if err != nil {
				t.Fatal(err)
			}
			if c.Net.CNIVersion != v || c.Net.PrevResult == nil || c.Net.PrevResult.Version() != v {
				t.Fatalf("version %s: %+v", v, c.Net)
			}
			// Defaults.
			if c.FailurePolicy != Block || c.Backend != nat.Auto || c.PodLookupTimeout != 30*time.Second ||
				c.LogLevel != slog.LevelInfo || !slices.Equal(c.Pods.ExcludeNamespaces, []string{"kube-system"}) {
				t.Fatalf("defaults: %+v", c)
			}
			// Without prevResult it parses too (DEL, or the ADD error path).
			c, err = Parse([]byte(configtest.Conf(v, "")))
			if err != nil || c.Net.PrevResult != nil {
				t.Fatalf("no prevResult: %v %+v", err, c)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	c, err := Parse([]byte(configtest.Conf("1.0.0", `,
		"kubeconfig": "/etc/cni/net.d/mesh-cni-kubeconfig",
		"excludeNamespaces": ["kube-system", "istio-system"],
		"failurePolicy": "Alert", "podLookupTimeout": "5s",
		"iptablesBackend": "legacy", "logLevel": "debug", "logFile": "/var/log/mesh-cni.log",
		"installerNamespace": "mesh-cni-system", "installerPodPrefix": "mesh-cni-node-",
		"redirect": {"outboundPort": 15101, "proxyUID": 2000, "excludeInboundPorts": "22,2222", "excludeOutboundIPRanges": "169.254.169.254/32"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if c.FailurePolicy != Alert || c.PodLookupTimeout != 5*time.Second || c.Backend != nat.Legacy || c.LogLevel != slog.LevelDebug ||
		c.Kubeconfig != "/etc/cni/net.d/mesh-cni-kubeconfig" || c.LogFile != "/var/log/mesh-cni.log" ||
		c.Pods.InstallerNamespace != "mesh-cni-system" || c.Pods.InstallerPodPrefix != "mesh-cni-node-" ||
		!slices.Equal(c.Pods.ExcludeNamespaces, []string{"kube-system", "istio-system"}) {
		t.Fatalf("%+v", c)
	}
	if c.Node.OutboundPort != 15101 || c.Node.InboundPort != 15006 || c.Node.Proxy.UID != 2000 || c.Node.Proxy.GID != 1337 ||
		c.Node.Lists.ExcludeInboundPorts != "22,2222" || c.Pods.DefaultProxy.UID != 2000 {
		t.Fatalf("redirect defaults: %+v", c.Node)
	}
	// An explicitly empty list means none, not the default.
	c, err = Parse([]byte(configtest.Conf("1.0.0", `,"excludeNamespaces": []`)))
	if err != nil || len(c.Pods.ExcludeNamespaces) != 0 {
		t.Fatalf("empty excludeNamespaces: %v %v", err, c.Pods.ExcludeNamespaces)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ extra, key string }{
		{`"failurePolicy": "block"`, "failurePolicy"},
		{`"iptablesBackend": "ebpf"`, "iptablesBackend"},
		{`"logLevel": "trace"`, "logLevel"},
		{`"podLookupTimeout": "30"`, "podLookupTimeout"},
		{`"podLookupTimeout": "-1s"`, "podLookupTimeout"},
		{`"excludeNamespaces": "kube-system"`, "excludeNamespaces"},
		{`"excludeNamespaces": ["a b"]`, "excludeNamespaces"},
		{`"kubeconfig": 7`, "kubeconfig"},
		{`"installerNamespace": "mesh-cni-system"`, "installerPodPrefix"},
		{`"redirect": {"outboundPort": 70000}`, "outboundPort"},
		{`"redirect": {"inboundPort": 0}`, "redirect.inboundPort"},
		{`"redirect": {"includeOutboundIPRanges": "10.0.0.0/8 x"}`, "redirect.includeOutboundIPRanges"},
		{`"redirect": {"excludeInterfaces": "eth0;reboot"}`, "redirect.excludeInterfaces"},
		{`"prevResult": {"cniVersion": "1.0.0", "ips": "x"}`, "prevResult"},
	} {
		t.Run(c.key, func(t *testing.T) {
			_, err := Parse([]byte(configtest.Conf("1.0.0", ","+c.extra)))
			if err == nil || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("err = %v, want one naming %s", err, c.key)
			}
		})
	}
	if _, err := Parse([]byte("{not json")); err == nil {
		t.Fatal("garbage parsed")
	}
}
