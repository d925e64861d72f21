package installer

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

var baseEnv = map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}

func TestFlagDefaults(t *testing.T) {
	c, err := ParseFlags(nil, envOf(baseEnv))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"net dir":        {c.NetDir, "/host/etc/cni/net.d"},
		"bin dir":        {c.BinDir, "/host/opt/cni/bin"},
		"plugin binary":  {c.PluginBinary, "/opt/mesh-cni/mesh-cni"},
		"kubeconfig dir": {c.KubeconfigDir, "/host/etc/cni/net.d"},
		"host dir":       {c.HostKubeconfigDir, "/etc/cni/net.d"},
		"sa dir":         {c.ServiceAccountDir, "/var/run/secrets/kubernetes.io/serviceaccount"},
		"api server":     {c.APIServer, "https://10.96.0.1:443"},
		"policy":         {c.FailurePolicy, "Block"},
		"plugin level":   {c.PluginLogLevel, "info"},
		"namespace":      {c.InstallerNamespace, "mesh-cni-system"},
		"prefix":         {c.InstallerPodPrefix, "mesh-cni-node-"},
		"excluded":       {strings.Join(c.ExcludeNamespaces, ","), "kube-system"},
	}
	for what, v := range checks {
		if v[0] != v[1] {
			t.Errorf("%s = %q, want %q", what, v[0], v[1])
		}
	}
	if c.InstanceID == "" || c.SkipCleanup || c.PodLookupTimeout != 30*time.Second {
		t.Errorf("bad defaults: %+v", c)
	}
	if got := string(c.Entry()); !strings.Contains(got, `"kubeconfig":"/etc/cni/net.d/mesh-cni-kubeconfig"`) {
		t.Errorf("entry does not name the host kubeconfig path: %s", got)
	}
}

func TestFlagIPv6ServiceHost(t *testing.T) {
	c, err := ParseFlags(nil, envOf(map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.APIServer != "https://[fd00::1]:443" {
		t.Errorf("APIServer = %q", c.APIServer)
	}
}

func TestEnvEquivalentsAndPrecedence(t *testing.T) {
	env := map[string]string{
		"CNI_NET_DIR": "/n", "CNI_BIN_DIR": "/b", "CNI_CONF_NAME": "10-x.conflist", "PLUGIN_BINARY": "/p",
		"KUBECONFIG_DIR": "/k", "SERVICE_ACCOUNT_DIR": "/sa", "KUBE_API_SERVER": "https://api:6443",
		"EXCLUDE_NAMESPACES": "a, b,a", "FAILURE_POLICY": "Alert", "HEALTH_ADDR": "127.0.0.1:1",
		"METRICS_ADDR": "", "LOG_LEVEL": "debug", "SKIP_CLEANUP": "true", "POD_NAMESPACE": "from-pod",
		"REDIRECT": `{"excludeInboundPorts":"22","proxyUID":1337}`, "INSTANCE_ID": "abc",
	}
	c, err := ParseFlags([]string{"--failure-policy=Block", "--log-level", "warn"}, envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.NetDir != "/n" || c.BinDir != "/b" || c.ConfName != "10-x.conflist" || c.PluginBinary != "/p" ||
		c.KubeconfigDir != "/k" || c.HostKubeconfigDir != "/k" || c.ServiceAccountDir != "/sa" ||
		c.APIServer != "https://api:6443" || strings.Join(c.ExcludeNamespaces, ",") != "a,b" ||
		c.HealthAddr != "127.0.0.1:1" || c.MetricsAddr != ":15290" || !c.SkipCleanup ||
		c.InstallerNamespace != "from-pod" || c.InstanceID != "abc" || string(c.Redirect) != `{"excludeInboundPorts":"22","proxyUID":1337}` {
		t.Errorf("env not applied: %+v", c)
	}
	if c.FailurePolicy != "Block" || c.LogLevel != "warn" || c.PluginLogLevel != "warn" {
		t.Errorf("command line must win over env: policy=%s level=%s", c.FailurePolicy, c.LogLevel)
	}
	if _, err := ParseFlags([]string{"--skip-cleanup"}, envOf(baseEnv)); err != nil {
		t.Errorf("bare boolean flag: %v", err)
	}
}

func TestBadValuesNameTheFlag(t *testing.T) {
	for _, tc := range []struct{ flag, value string }{
		{"cni-net-dir", "relative/dir"},
		{"cni-bin-dir", ""},
		{"cni-conf-name", "../etc/passwd"},
		{"cni-conf-name", "10-calico.yaml"},
		{"plugin-binary", "mesh-cni"},
		{"kubeconfig-dir", "k"},
		{"host-kubeconfig-dir", "etc"},
		{"service-account-dir", "sa"},
		{"kube-api-server", "http://api:80"},
		{"kube-api-server", "https://"},
		{"exclude-namespaces", "kube-system,Bad_NS"},
		{"failure-policy", "block"},
		{"failure-policy", "Ignore"},
		{"pod-lookup-timeout", "30"},
		{"pod-lookup-timeout", "-1s"},
		{"iptables-backend", "nftables"},
		{"plugin-log-level", "trace"},
		{"plugin-log-file", "log.txt"},
		{"installer-namespace", "Mesh"},
		{"installer-pod-prefix", ""},
		{"installer-pod-prefix", "Mesh_"},
		{"redirect", `{"inboundPort":99999}`},
		{"redirect", `{"bogus":1}`},
		{"redirect", `{"excludeInboundPorts":22}`},
		{"redirect", `[1]`},
		{"health-addr", "localhost"},
		{"health-addr", ":99999"},
		{"metrics-addr", "example.com:80"},
		{"log-level", "verbose"},
		{"skip-cleanup", "maybe"},
		{"instance-id", "a b"},
		{"resync-interval", "0s"},
		{"drift-warn-count", "0"},
		{"drift-warn-window", "soon"},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			_, err := ParseFlags([]string{"--" + tc.flag + "=" + tc.value}, envOf(baseEnv))
			if err == nil {
				t.Fatalf("--%s=%q accepted", tc.flag, tc.value)
			}
			if !strings.Contains(err.Error(), "--"+tc.flag) {
				t.Errorf("error does not name --%s: %v", tc.flag, err)
			}
			// The same value from the environment is refused the same way.
			var spec FlagSpec
			for _, f := range Flags {
				if f.Name == tc.flag {
					spec = f
				}
			}
			env := map[string]string{spec.Env: tc.value}
			for k, v := range baseEnv {
				env[k] = v
			}
			if tc.value == "" {
				return // an empty variable means "unset"
			}
			_, err = ParseFlags(nil, envOf(env))
			if err == nil || !strings.Contains(err.Error(), spec.Env) {
				t.Errorf("$%s=%q: error %v does not name the variable", spec.Env, tc.value, err)
			}
		})
	}
}

func TestFlagMisuse(t *testing.T) {
	if _, err := ParseFlags([]string{"--no-such-flag"}, envOf(baseEnv)); err == nil {
		t.Error("unknown flag accepted")
	}
	if _, err := ParseFlags([]string{"stray"}, envOf(baseEnv)); err == nil {
		t.Error("stray argument accepted")
	}
	if _, err := ParseFlags([]string{"-h"}, envOf(baseEnv)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
	if _, err := ParseFlags(nil, envOf(nil)); err == nil || !strings.Contains(err.Error(), "--kube-api-server") {
		t.Errorf("missing API server: %v", err)
	}
	for _, f := range Flags {
		if !strings.Contains(Usage(), "--"+f.Name) || !strings.Contains(Usage(), f.Env) {
			t.Errorf("usage lacks --%s", f.Name)
		}
	}
}
