package installer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FlagSpec describes one command-line flag and its environment equivalent.
type FlagSpec struct {
	Name    string // without dashes
	Env     string
	Default string
	Usage   string
	Bool    bool
	set     func(c *Config, v string) error
}

// Flags is the installer's command-line interface, in the order the docs
// list it. Every flag has an environment variable; a flag given on the
// command line wins over the variable.
var Flags = []FlagSpec{
	{Name: "cni-net-dir", Env: "CNI_NET_DIR", Default: "/host/etc/cni/net.d", Usage: "host CNI config dir (mounted)", set: absPath(func(c *Config) *string { return &c.NetDir })},
	{Name: "cni-bin-dir", Env: "CNI_BIN_DIR", Default: "/host/opt/cni/bin", Usage: "host CNI bin dir (mounted)", set: absPath(func(c *Config) *string { return &c.BinDir })},
	{Name: "cni-conf-name", Env: "CNI_CONF_NAME", Usage: "primary config file to chain into (default: the file the runtime uses, lexically first valid)", set: setConfName},
	{Name: "plugin-binary", Env: "PLUGIN_BINARY", Default: "/opt/mesh-cni/mesh-cni", Usage: "plug-in binary to copy into --cni-bin-dir", set: absPath(func(c *Config) *string { return &c.PluginBinary })},
	{Name: "kubeconfig-dir", Env: "KUBECONFIG_DIR", Default: "/host/etc/cni/net.d", Usage: "where the plug-in kubeconfig and its token copy are written (mounted)", set: absPath(func(c *Config) *string { return &c.KubeconfigDir })},
	{Name: "host-kubeconfig-dir", Env: "HOST_KUBECONFIG_DIR", Usage: "--kubeconfig-dir as the host sees it (default: --kubeconfig-dir without a leading /host)", set: optAbsPath(func(c *Config) *string { return &c.HostKubeconfigDir })},
	{Name: "service-account-dir", Env: "SERVICE_ACCOUNT_DIR", Default: "/var/run/secrets/kubernetes.io/serviceaccount", Usage: "projected service account volume (token, ca.crt)", set: absPath(func(c *Config) *string { return &c.ServiceAccountDir })},
	{Name: "kube-api-server", Env: "KUBE_API_SERVER", Usage: "API server URL for the plug-in (default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)", set: setAPIServer},
	{Name: "exclude-namespaces", Env: "EXCLUDE_NAMESPACES", Default: "kube-system", Usage: "comma-separated namespaces the plug-in never redirects", set: setNamespaces},
	{Name: "failure-policy", Env: "FAILURE_POLICY", Default: "Block", Usage: "plug-in behaviour when the API cannot answer: Block | Alert", set: enum(func(c *Config) *string { return &c.FailurePolicy }, "Block", "Alert")},
	{Name: "pod-lookup-timeout", Env: "POD_LOOKUP_TIMEOUT", Default: "30s", Usage: "plug-in: total retry budget for the pod GET", set: setLookupTimeout},
	{Name: "iptables-backend", Env: "IPTABLES_BACKEND", Default: "auto", Usage: "plug-in: auto | legacy | nft", set: enum(func(c *Config) *string { return &c.IptablesBackend }, "auto", "legacy", "nft")},
	{Name: "plugin-log-level", Env: "PLUGIN_LOG_LEVEL", Usage: "plug-in log level: debug | info | warn | error (default: --log-level)", set: optEnum(func(c *Config) *string { return &c.PluginLogLevel }, "debug", "info", "warn", "error")},
	{Name: "plugin-log-file", Env: "PLUGIN_LOG_FILE", Usage: "plug-in log file on the host (default: stderr only)", set: optAbsPath(func(c *Config) *string { return &c.PluginLogFile })},
	{Name: "installer-namespace", Env: "INSTALLER_NAMESPACE", Usage: "namespace of the installer's pods, skipped by the plug-in (default: $POD_NAMESPACE, else mesh-cni-system)", set: setInstallerNamespace},
	{Name: "installer-pod-prefix", Env: "INSTALLER_POD_PREFIX", Default: "mesh-cni-node-", Usage: "name prefix of the installer's pods, skipped by the plug-in", set: setPodPrefix},
	{Name: "redirect", Env: "REDIRECT", Usage: `plug-in node-level redirect defaults as a JSON object, e.g. {"excludeInboundPorts":"22"}`, set: setRedirect},
	{Name: "sandbox-dir", Env: "SANDBOX_DIR", Usage: "plug-in: host directory of the per-sandbox records `mesh-cni inspect` reads (default: the plug-in's, /var/run/mesh-cni/sandboxes)", set: optAbsPath(func(c *Config) *string { return &c.SandboxDir })},
	{Name: "agent-socket", Env: "AGENT_SOCKET", Default: "/var/run/mesh-cni/agent.sock", Usage: "node agent socket (host path, mounted at the same path); the plug-in asks it for pods; empty or \"off\": no agent", set: setAgentSocket},
	{Name: "health-addr", Env: "HEALTH_ADDR", Default: ":15280", Usage: "listen address of /healthz and /readyz (empty: off)", set: addr(func(c *Config) *string { return &c.HealthAddr })},
	{Name: "metrics-addr", Env: "METRICS_ADDR", Default: ":15290", Usage: "listen address of Prometheus /metrics (empty: off)", set: addr(func(c *Config) *string { return &c.MetricsAddr })},
	{Name: "log-level", Env: "LOG_LEVEL", Default: "info", Usage: "installer log level: debug | info | warn | error", set: enum(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{Name: "skip-cleanup", Env: "SKIP_CLEANUP", Default: "false", Bool: true, Usage: "leave binary, kubeconfig and config entry in place on exit", set: setSkipCleanup},
	{Name: "instance-id", Env: "INSTANCE_ID", Usage: "identity recorded in the owner file (default: random per process)", set: setInstanceID},
	{Name: "resync-interval", Env: "RESYNC_INTERVAL", Default: "15s", Usage: "full check even without file events", set: positiveDuration(func(c *Config) *time.Duration { return &c.ResyncInterval })},
	{Name: "drift-warn-count", Env: "DRIFT_WARN_COUNT", Default: "5", Usage: "warn when our entry is undone more than this many times ...", set: setDriftCount},
	{Name: "drift-warn-window", Env: "DRIFT_WARN_WINDOW", Default: "1m", Usage: "... within this window", set: positiveDuration(func(c *Config) *time.Duration { return &c.DriftWarnWindow })},
}

type flagValue struct {
	val    *string
	isBool bool
}

func (v *flagValue) String() string {
	if v == nil || v.val == nil {
		return ""
	}
	return *v.val
}
func (v *flagValue) Set(s string) error { *v.val = s; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.isBool }

// ParseFlags builds a validated Config from args (without the program name)
// and the environment. Any bad value is an error naming the flag and its
// variable.
func ParseFlags(args []string, getenv func(string) string) (Config, error) {
	fs := flag.NewFlagSet("install-cni", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	raw := make(map[string]*string, len(Flags))
	for _, f := range Flags {
		s := f.Default
		raw[f.Name] = &s
		fs.Var(&flagValue{val: raw[f.Name], isBool: f.Bool}, f.Name, f.Usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, err
		}
		return Config{}, fmt.Errorf("%v\n%s", err, Usage())
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), Usage())
	}
	onCmdline := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCmdline[f.Name] = true })

	c := Config{
		PodName:  getenv("POD_NAME"),
		PodUID:   getenv("POD_UID"),
		NodeName: getenv("NODE_NAME"),
	}
	for _, f := range Flags {
		v, from := *raw[f.Name], "--"+f.Name
		if !onCmdline[f.Name] {
			if e := getenv(f.Env); e != "" {
				v, from = e, "$"+f.Env
			}
		}
		if err := f.set(&c, v); err != nil {
			return Config{}, fmt.Errorf("invalid value %q for --%s (env %s, here from %s): %v", v, f.Name, f.Env, from, err)
		}
	}
	// Derived defaults.
	if c.HostKubeconfigDir == "" {
		c.HostKubeconfigDir = stripHostPrefix(c.KubeconfigDir)
	}
	if c.PluginLogLevel == "" {
		c.PluginLogLevel = c.LogLevel
	}
	if c.InstallerNamespace == "" {
		ns := getenv("POD_NAMESPACE")
		if ns == "" {
			ns = "mesh-cni-system"
		}
		if err := setInstallerNamespace(&c, ns); err != nil {
			return Config{}, fmt.Errorf("invalid $POD_NAMESPACE %q for --installer-namespace: %v", ns, err)
		}
	}
	if c.APIServer == "" {
		host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return Config{}, errors.New("--kube-api-server (env KUBE_API_SERVER) is not set and $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT are not in the environment")
		}
		u := "https://" + net.JoinHostPort(host, port)
		if err := setAPIServer(&c, u); err != nil {
			return Config{}, fmt.Errorf("invalid $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT for --kube-api-server: %v", err)
		}
	}
	if c.InstanceID == "" {
		c.InstanceID = randomID()
	}
	return c, nil
}

// Usage renders the flag list for --help.
func Usage() string {
	var b strings.Builder
	b.WriteString("Usage: install-cni [flags]\n\nEvery flag can also be set by its environment variable; the command line wins.\n\n")
	for _, f := range Flags {
		fmt.Fprintf(&b, "  --%s (env %s)", f.Name, f.Env)
		if f.Default != "" {
			fmt.Fprintf(&b, ", default %q", f.Default)
		}
		fmt.Fprintf(&b, "\n      %s\n", f.Usage)
	}
	return b.String()
}

func stripHostPrefix(p string) string {
	if p == "/host" {
		return "/"
	}
	if strings.HasPrefix(p, "/host/") {
		return strings.TrimPrefix(p, "/host")
	}
	return p
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func absPath(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			return errors.New("must not be empty")
		}
		if !filepath.IsAbs(v) {
			return errors.New("must be an absolute path")
		}
		*field(c) = filepath.Clean(v)
		return nil
	}
}

func optAbsPath(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			*field(c) = ""
			return nil
		}
		return absPath(field)(c, v)
	}
}

func enum(field func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, a := range allowed {
			if v == a {
				*field(c) = v
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
	}
}

func optEnum(field func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			*field(c) = ""
			return nil
		}
		return enum(field, allowed...)(c, v)
	}
}

func positiveDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("not a duration (e.g. 30s)")
		}
		if d <= 0 {
			return errors.New("must be positive")
		}
		*field(c) = d
		return nil
	}
}

func addr(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			*field(c) = ""
			return nil
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			return errors.New("not a host:port listen address")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return errors.New("port must be a number 0-65535")
		}
		if host != "" && net.ParseIP(host) == nil && host != "localhost" {
			return errors.New("host must be empty, an IP address or localhost")
		}
		*field(c) = v
		return nil
	}
}

func setConfName(c *Config, v string) error {
	if v == "" {
		c.ConfName = ""
		return nil
	}
	if strings.ContainsRune(v, '/') || v == "." || v == ".." {
		return errors.New("must be a file name in --cni-net-dir, not a path")
	}
	if !isConfName(v) {
		return fmt.Errorf("must end in %s", strings.Join(ConfExtensions, ", "))
	}
	c.ConfName = v
	return nil
}

func setAPIServer(c *Config, v string) error {
	if v == "" {
		c.APIServer = ""
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return errors.New("must be an https://host[:port] URL")
	}
	c.APIServer = strings.TrimSuffix(v, "/")
	return nil
}

func setNamespaces(c *Config, v string) error {
	c.ExcludeNamespaces = []string{}
	seen := map[string]bool{}
	for _, ns := range strings.Split(v, ",") {
		ns = strings.TrimSpace(ns)
		if ns == "" {
			continue
		}
		if err := dns1123Label(ns); err != nil {
			return fmt.Errorf("%q is not a namespace name: %v", ns, err)
		}
		if !seen[ns] {
			seen[ns] = true
			c.ExcludeNamespaces = append(c.ExcludeNamespaces, ns)
		}
	}
	return nil
}

func setLookupTimeout(c *Config, v string) error {
	return positiveDuration(func(c *Config) *time.Duration { return &c.PodLookupTimeout })(c, v)
}

func setInstallerNamespace(c *Config, v string) error {
	if v == "" {
		c.InstallerNamespace = ""
		return nil
	}
	if err := dns1123Label(v); err != nil {
		return err
	}
	c.InstallerNamespace = v
	return nil
}

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// dns1123Label checks a namespace name (RFC 1123 label, as Kubernetes does).
func dns1123Label(s string) error {
	if len(s) > 63 {
		return errors.New("must be no more than 63 characters")
	}
	if !dns1123.MatchString(s) {
		return errors.New("must consist of lower case alphanumeric characters or '-', and start and end with one")
	}
	return nil
}

func setPodPrefix(c *Config, v string) error {
	if v == "" {
		return errors.New("must not be empty (an empty prefix would exempt every pod of the namespace)")
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("%q is not allowed in a pod name", r)
		}
	}
	c.InstallerPodPrefix = v
	return nil
}

func setSkipCleanup(c *Config, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return errors.New("must be true or false")
	}
	c.SkipCleanup = b
	return nil
}

func setInstanceID(c *Config, v string) error {
	if strings.ContainsAny(v, "\n\r\t ") {
		return errors.New("must not contain whitespace")
	}
	c.InstanceID = v
	return nil
}

func setDriftCount(c *Config, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return errors.New("must be a whole number >= 1")
	}
	c.DriftWarnCount = n
	return nil
}

// redirectKeys are the keys of the contract's "redirect" object with their
// JSON kind: port numbers, ids, or strings the plug-in parses.
var redirectKeys = map[string]string{
	"outboundPort": "port", "inboundPort": "port", "inboundTunnelPort": "port",
	"proxyUID": "id", "proxyGID": "id",
	"includeInboundPorts": "string", "excludeInboundPorts": "string",
	"includeOutboundIPRanges": "string", "excludeOutboundIPRanges": "string",
	"includeOutboundPorts": "string", "excludeOutboundPorts": "string", "excludeInterfaces": "string",
}

func setRedirect(c *Config, v string) error {
	if strings.TrimSpace(v) == "" {
		c.Redirect = nil
		return nil
	}
	obj, err := decodeObject([]byte(v))
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, m := range obj {
		kind, ok := redirectKeys[m.Key]
		if !ok {
			return fmt.Errorf("unknown key %q", m.Key)
		}
		if seen[m.Key] {
			return fmt.Errorf("key %q given twice", m.Key)
		}
		seen[m.Key] = true
		switch kind {
		case "port", "id":
			var n json.Number
			if err := json.Unmarshal(m.Value, &n); err != nil {
				return fmt.Errorf("%s must be a number", m.Key)
			}
			i, err := strconv.ParseUint(n.String(), 10, 32)
			if err != nil || (kind == "port" && (i < 1 || i > 65535)) {
				return fmt.Errorf("%s=%s is out of range", m.Key, n)
			}
		case "string":
			var s string
			if err := json.Unmarshal(m.Value, &s); err != nil {
				return fmt.Errorf("%s must be a string", m.Key)
			}
		}
	}
	var buf bytes.Buffer
	if err := obj.appendCompact(&buf); err != nil {
		return err
	}
	c.Redirect = json.RawMessage(buf.Bytes())
	return nil
}

// setAgentSocket: "off" turns the agent off where an empty value cannot (an
// empty environment variable means "the default").
func setAgentSocket(c *Config, v string) error {
	if v == "off" {
		v = ""
	}
	return optAbsPath(func(c *Config) *string { return &c.AgentSocket })(c, v)
}
