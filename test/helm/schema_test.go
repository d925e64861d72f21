package helm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestSchemaRefuses: each bad value is refused by helm itself (exit status,
// nothing rendered) with helm's message naming the key. The messages are
// helm's (its JSON-schema validator), asserted as helm prints them.
func TestSchemaRefuses(t *testing.T) {
	tl := findTools(t)
	badFile := filepath.Join(t.TempDir(), "bad.yaml")
	// YAML 1.1 reads a bare yes as true: a values file gets a boolean
	if err := os.WriteFile(badFile, []byte("failurePolicy: block\nexcludeNamespaces: kube-system\nrepairMode: yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--set", "failurePolicy=block"}, []string{"at '/failurePolicy': value must be one of 'Block', 'Alert'"}},
		{[]string{"--set", "repairMode=yes"}, []string{"at '/repairMode': value must be one of 'delete', 'label', 'repair', 'off'"}},
		{[]string{"--set", "repairMode=true"}, []string{"at '/repairMode': got boolean, want string"}},
		{[]string{"--set", "taint.enabled=yes"}, []string{"at '/taint/enabled': got string, want boolean"}},
		{[]string{"--set", "failurepolicy=Block"}, []string{"at '': additional properties 'failurepolicy' not allowed"}},
		{[]string{"--set", "excludeNamespaces=kube-system"}, []string{"at '/excludeNamespaces': got string, want array"}},
		{[]string{"--set", "excludeNamespaces={Kube_System}"}, []string{"at '/excludeNamespaces/0': 'Kube_System' does not match pattern"}},
		{[]string{"--set", "podLookupTimeout=30"}, []string{"at '/podLookupTimeout': got number, want string"}},
		{[]string{"--set", "podLookupTimeout=thirty"}, []string{"at '/podLookupTimeout': 'thirty' does not match pattern"}},
		{[]string{"--set", "iptablesBackend=iptables"}, []string{"at '/iptablesBackend': value must be one of 'auto', 'legacy', 'nft'"}},
		{[]string{"--set", "logLevel=trace"}, []string{"at '/logLevel': value must be one of 'debug', 'info', 'warn', 'error'"}},
		{[]string{"--set-string", "skipCleanup=yes"}, []string{"at '/skipCleanup': got string, want boolean"}},
		{[]string{"--set", "image.tags=v1"}, []string{"at '/image': additional properties 'tags' not allowed"}},
		{[]string{"--set", "image.pullPolicy=always"}, []string{"at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"}},
		{[]string{"--set", "cniBinDir=opt/cni/bin"}, []string{"at '/cniBinDir': 'opt/cni/bin' does not match pattern"}},
		{[]string{"--set", "metrics.port=0"}, []string{"at '/metrics/port': minimum: got 0, want 1"}},
		{[]string{"--set", "redirect.outboundPort=70000"}, []string{"at '/redirect/outboundPort': maximum: got 70,000, want 65,535"}},
		{[]string{"--set", "redirect.excludeInboundPort=22"}, []string{"at '/redirect': additional properties 'excludeInboundPort' not allowed"}},
		{[]string{"--set", "tolerations[0].operator=exists"}, []string{"at '/tolerations/0/operator': value must be one of 'Exists', 'Equal'"}},
		{[]string{"--set", "agent.podWait=300"}, []string{"at '/agent/podWait': got number, want string"}},
		{[]string{"--set", "podLabels.app\\.kubernetes\\.io/name=x"}, []string{"at '/podLabels/app.kubernetes.io~1name': false schema"}},
		{[]string{"-f", badFile}, []string{
			"at '/failurePolicy': value must be one of 'Block', 'Alert'",
			"at '/excludeNamespaces': got string, want array",
			"at '/repairMode': got boolean, want string"}},
	} {
		args := append([]string{"template", releaseName, chartDir, "--namespace", releaseNS}, c.args...)
		out, errOut, err := run(tl.helm, args...)
		if err == nil {
			t.Errorf("helm template %v: accepted, want refused", c.args)
			continue
		}
		if out != "" {
			t.Errorf("helm template %v: rendered %d bytes despite the error", c.args, len(out))
		}
		if !strings.Contains(errOut, "values don't meet the specifications of the schema") {
			t.Errorf("helm template %v: not a schema refusal:\n%s", c.args, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("helm template %v: error does not say %q:\n%s", c.args, w, errOut)
			}
		}
	}
}

// TestSchemaAccepts: the values a user types for real pass, so the schema
// is not stricter than the chart.
func TestSchemaAccepts(t *testing.T) {
	tl := findTools(t)
	for _, args := range [][]string{
		{"--set", "failurePolicy=Alert"},
		{"--set", "excludeNamespaces={kube-system,istio-system}"},
		{"--set", "excludeNamespaces=null"},
		{"--set", "podLookupTimeout=1m30s"},
		{"--set", "redirect.excludeOutboundIPRanges=10.0.0.0/8\\,192.168.0.1/32"},
		{"--set", "redirect.includeInboundPorts=*"},
		{"--set", "image.digest=sha256:" + strings.Repeat("ab", 32)},
		{"--set", "resources.limits.cpu=1", "--set", "resources.requests.memory=1Gi"},
		{"--set", "tolerations[0].key=a", "--set", "tolerations[0].operator=Exists", "--set", "tolerations[0].effect=NoExecute"},
		{"--set", "agent.podWait=2s"},
		{"--set", "metrics.serviceMonitor.interval=15s"},
	} {
		tl.template(t, args...)
	}
}

// TestValuesDocumented: every key the schema defines is in values.yaml with
// a comment right above it (values.yaml is the documentation, docs/helm.md),
// except inside the Kubernetes types resources, affinity, seLinuxOptions and
// the redirect block, which values.yaml documents as a whole.
func TestValuesDocumented(t *testing.T) {
	var schema map[string]any
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var want []string
	var walk func(prefix string, node map[string]any)
	walk = func(prefix string, node map[string]any) {
		props, _ := node["properties"].(map[string]any)
		for k, v := range props {
			p := strings.TrimPrefix(prefix+"."+k, ".")
			if sub, ok := v.(map[string]any); ok {
				want = append(want, p)
				switch p {
				case "resources", "affinity", "seLinuxOptions", "redirect", "podLabels", "podAnnotations":
					continue
				}
				walk(p, sub)
			}
		}
	}
	walk("", schema)
	sort.Strings(want)

	documented := documentedKeys(t, filepath.Join(chartDir, "values.yaml"))
	for _, p := range want {
		if p == "global" {
			continue // helm's, for subcharts
		}
		if ok, found := documented[p]; !found {
			t.Errorf("values.yaml has no key %s (the schema defines it)", p)
		} else if !ok {
			t.Errorf("values.yaml: key %s has no comment right above it", p)
		}
	}
}

var keyLine = regexp.MustCompile(`^( *)([A-Za-z][A-Za-z0-9]*):`)

// documentedKeys maps each dotted key path of values.yaml to whether a
// comment line is right above it.
func documentedKeys(t *testing.T, file string) map[string]bool {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	var stack []string
	prevComment := false
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			prevComment = false
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			prevComment = true
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			prevComment = false
			continue
		}
		depth := len(m[1]) / 2
		if depth > len(stack) {
			depth = len(stack)
		}
		stack = append(stack[:depth], m[2])
		out[strings.Join(stack, ".")] = prevComment
		prevComment = false
	}
	return out
}
