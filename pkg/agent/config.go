// Package agent is the node agent install-cni runs beside its file work: a
// node-scoped pod cache served to the plug-in over a unix socket
// (pkg/agentapi), the plug-in's decisions written to stdout as JSON lines,
// Kubernetes Events on the pods, and Prometheus metrics.
package agent

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshcni/mesh-cni/pkg/repair"
)

// Config is the agent's validated configuration.
type Config struct {
	Socket     string        // where to listen; "" turns the agent off
	Kubeconfig string        // "" = in-cluster identity
	NodeName   string        // the node whose pods are cached
	PodWait    time.Duration // longest wait for a pod the watch has not delivered
	// EventRedirected posts a Normal Redirected Event for each redirected
	// pod (the Warnings are always posted).
	EventRedirected bool
	EventQPS        float64 // Events posted per second, on average ...
	EventBurst      int     // ... and at once
	PeerUID         uint32  // the only uid allowed on the socket (0)
	// PluginServiceAccount is the plug-in's own service account, in the
	// DaemonSet's namespace, whose token install-cni mints for the
	// plug-in's kubeconfig (pkg/plugintoken); "" = copy the mounted token.
	PluginServiceAccount string
	PluginTokenExpiry    time.Duration // the lifetime asked for each token
	// ReadinessTaint removes mesh-cni.io/not-ready from this node once it
	// is ready for meshed pods (pkg/readiness, docs/taint.md).
	ReadinessTaint bool
	// StatusPath is the PATH of that check's plug-in STATUS: the host's
	// iptables tools as mounted in the container.
	StatusPath string
	// RepairMode is what the repair controller does to an unmeshed pod
	// (docs/repair.md).
	RepairMode repair.Mode

	// Set by embedders and tests.
	Out      io.Writer // the decision log (stdout)
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// OnReady, when set, is called once when the agent turns ready (pod
	// cache synced); it must not block.
	OnReady func()
}

// flagSpec is one agent flag and its environment variable.
type flagSpec struct {
	name, env, def, usage string
	set                   func(*Config, string) error
}

var flags = []flagSpec{
	{"kubeconfig", "KUBECONFIG", "", "agent: kubeconfig for the API (default: in-cluster service account)", func(c *Config, v string) error {
		if v != "" && !filepath.IsAbs(v) {
			return errors.New("must be an absolute path")
		}
		c.Kubeconfig = v
		return nil
	}},
	{"node-name", "NODE_NAME", "", "agent: this node's name (the pod cache holds its pods)", func(c *Config, v string) error {
		c.NodeName = v
		return nil
	}},
	{"pod-wait", "POD_WAIT", "300ms", "agent: longest wait for a pod the watch has not delivered yet (0-5s)", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 5*time.Second {
			return errors.New("want a duration from 0 to 5s")
		}
		c.PodWait = d
		return nil
	}},
	{"event-redirected", "EVENT_REDIRECTED", "true", "agent: post a Normal Redirected Event per redirected pod", func(c *Config, v string) (err error) {
		c.EventRedirected, err = strconv.ParseBool(v)
		return err
	}},
	{"event-qps", "EVENT_QPS", "5", "agent: Events posted per second on average (>0)", func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return errors.New("want a positive number")
		}
		c.EventQPS = f
		return nil
	}},
	{"event-burst", "EVENT_BURST", "25", "agent: Events posted at once (>0)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return errors.New("want a positive integer")
		}
		c.EventBurst = n
		return nil
	}},
	{"plugin-service-account", "PLUGIN_SERVICE_ACCOUNT", "", "the plug-in's own service account (in the DaemonSet's namespace): its token is minted with the TokenRequest API for the plug-in's kubeconfig; empty: copy this pod's service account token", func(c *Config, v string) error {
		if v != "" {
			if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
				return errors.New(strings.Join(errs, "; "))
			}
		}
		c.PluginServiceAccount = v
		return nil
	}},
	{"plugin-token-expiry", "PLUGIN_TOKEN_EXPIRY", "1h", "lifetime asked for each plug-in token (10m-24h); it is renewed at 80% of it", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Minute || d > 24*time.Hour {
			return errors.New("want a duration from 10m to 24h")
		}
		c.PluginTokenExpiry = d
		return nil
	}},
	{"readiness-taint", "READINESS_TAINT", "true", "agent: remove the taint mesh-cni.io/not-ready from this node once it is ready for meshed pods (never adds it; docs/taint.md)", func(c *Config, v string) (err error) {
		c.ReadinessTaint, err = strconv.ParseBool(v)
		return err
	}},
	{"status-path", "STATUS_PATH", "/host/usr/sbin", "agent: PATH of the plug-in STATUS run before the taint is removed: the host's iptables tools, mounted read-only (colon-separated absolute dirs)", func(c *Config, v string) error {
		for _, d := range filepath.SplitList(v) {
			if !filepath.IsAbs(d) {
				return fmt.Errorf("%q is not an absolute path", d)
			}
		}
		c.StatusPath = v
		return nil
	}},
	{"repair-mode", "REPAIR_MODE", string(repair.DefaultMode), "agent: what to do with a pod of this node that runs without the mesh redirect: delete (its controller recreates it redirected), label (mesh-cni.io/unmeshed=true), repair (program the redirect in place; needs the repair-inplace component), off (flag only); every mode posts an Unmeshed Warning Event (docs/repair.md)", func(c *Config, v string) (err error) {
		c.RepairMode, err = repair.ParseMode(v)
		return err
	}},
}

// ParseFlags takes the agent's flags out of args (the rest go to the
// installer) and fills a Config from them and the environment; a flag on
// the command line wins over its variable. The socket path is the
// installer's --agent-socket, passed by the caller.
func ParseFlags(args []string, getenv func(string) string) (Config, []string, error) {
	mine, rest := split(args)
	fs := flag.NewFlagSet("install-cni agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	vals := map[string]*string{}
	for _, f := range flags {
		v := f.def
		if e := getenv(f.env); e != "" {
			v = e
		}
		vals[f.name] = fs.String(f.name, v, f.usage)
	}
	if err := fs.Parse(mine); err != nil {
		return Config{}, nil, err
	}
	c := Config{}
	for _, f := range flags {
		if err := f.set(&c, *vals[f.name]); err != nil {
			return Config{}, nil, fmt.Errorf("invalid value %q for --%s (env %s): %v", *vals[f.name], f.name, f.env, err)
		}
	}
	return c, rest, nil
}

// Validate is called once the socket is known: an agent that runs needs
// its node.
func (c *Config) Validate() error {
	if c.Socket == "" {
		return nil
	}
	if !filepath.IsAbs(c.Socket) {
		return fmt.Errorf("--agent-socket %q: must be an absolute path", c.Socket)
	}
	if c.NodeName == "" {
		return errors.New("--node-name (env NODE_NAME) is required when the agent runs (--agent-socket not empty)")
	}
	return nil
}

// split separates --name=value / --name value pairs of the agent's flags.
func split(args []string) (mine, rest []string) {
	known := map[string]bool{}
	for _, f := range flags {
		known[f.name] = true
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !known[name] {
			rest = append(rest, a)
			continue
		}
		mine = append(mine, a)
		if !hasVal && i+1 < len(args) {
			i++
			mine = append(mine, args[i])
		}
	}
	return mine, rest
}

// Usage lists the agent's flags for --help.
func Usage() string {
	var b strings.Builder
	b.WriteString("\nNode agent flags (the agent runs when --agent-socket is not empty):\n\n")
	for _, f := range flags {
		fmt.Fprintf(&b, "  --%s (env %s)", f.name, f.env)
		if f.def != "" {
			fmt.Fprintf(&b, ", default %q", f.def)
		}
		fmt.Fprintf(&b, "\n      %s\n", f.usage)
	}
	return b.String()
}

// EnvNames are the environment variables the agent reads.
func EnvNames() []string {
	var out []string
	for _, f := range flags {
		out = append(out, f.env)
	}
	return out
}
