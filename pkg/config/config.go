// Package config parses and validates the plug-in's network configuration
// once, into a typed value the rest of the plug-in takes as given.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/podcheck"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// FailurePolicy says what ADD does when the Kubernetes API cannot answer.
type FailurePolicy string

const (
	// Block fails the ADD; the runtime retries. Zero trust: no silent bypass.
	Block FailurePolicy = "Block"
	// Alert lets the pod start unredirected and logs an error naming it.
	Alert FailurePolicy = "Alert"
)

// Defaults for keys the config leaves out.
const (
	DefaultPodLookupTimeout = 30 * time.Second
	DefaultLockWait         = 30 * time.Second
	// DefaultAgentSocket is where the node agent listens (agentapi.DefaultSocket).
	DefaultAgentSocket = "/var/run/mesh-cni/agent.sock"
	// DefaultSandboxDir keeps ADD's per-sandbox records for `mesh-cni inspect`.
	DefaultSandboxDir = "/var/run/mesh-cni/sandboxes"
)

// DefaultExcludeNamespaces is used when excludeNamespaces is absent.
var DefaultExcludeNamespaces = []string{"kube-system"}

// raw is the JSON as written in the conflist entry.
type raw struct {
	types.NetConf

	Kubeconfig         string          `json:"kubeconfig"`
	ExcludeNamespaces  *[]string       `json:"excludeNamespaces"`
	FailurePolicy      string          `json:"failurePolicy"`
	PodLookupTimeout   string          `json:"podLookupTimeout"`
	IptablesBackend    string          `json:"iptablesBackend"`
	LogLevel           string          `json:"logLevel"`
	LogFile            string          `json:"logFile"`
	InstallerNamespace string          `json:"installerNamespace"`
	InstallerPodPrefix string          `json:"installerPodPrefix"`
	Redirect           *redirectConfig `json:"redirect"`
	AgentSocket        *string         `json:"agentSocket"`
	SandboxDir         *string         `json:"sandboxDir"`
}

// redirectConfig holds node-level redirect defaults; absent keys keep
// redirect.DefaultNode's values.
type redirectConfig struct {
	OutboundPort      *uint16 `json:"outboundPort"`
	InboundPort       *uint16 `json:"inboundPort"`
	InboundTunnelPort *uint16 `json:"inboundTunnelPort"`
	ProxyUID          *uint32 `json:"proxyUID"`
	ProxyGID          *uint32 `json:"proxyGID"`

	IncludeInboundPorts     *string `json:"includeInboundPorts"`
	ExcludeInboundPorts     *string `json:"excludeInboundPorts"`
	IncludeOutboundIPRanges *string `json:"includeOutboundIPRanges"`
	ExcludeOutboundIPRanges *string `json:"excludeOutboundIPRanges"`
	IncludeOutboundPorts    *string `json:"includeOutboundPorts"`
	ExcludeOutboundPorts    *string `json:"excludeOutboundPorts"`
	ExcludeInterfaces       *string `json:"excludeInterfaces"`
}

// Config is the validated configuration.
type Config struct {
	// Net is the standard part, with PrevResult parsed (nil when absent).
	Net types.NetConf

	Kubeconfig       string
	Pods             podcheck.Config
	FailurePolicy    FailurePolicy
	PodLookupTimeout time.Duration
	Backend          nat.Backend
	LogLevel         slog.Level
	LogFile          string
	Node             redirect.Node
	// AgentSocket is the node agent's socket; "" means no agent: the pod is
	// read from the API directly.
	AgentSocket string
	// SandboxDir is where ADD records each sandbox and DEL removes it, for
	// `mesh-cni inspect`; "" keeps no records.
	SandboxDir string
}

// Parse reads stdin's network config. Errors name the key at fault.
func Parse(stdin []byte) (*Config, error) {
	var r raw
	if err := json.Unmarshal(stdin, &r); err != nil {
		return nil, fmt.Errorf("parsing network config: %w", err)
	}
	if err := version.ParsePrevResult(&r.NetConf); err != nil {
		return nil, fmt.Errorf("parsing prevResult: %w", err)
	}
	c := &Config{
		Net:        r.NetConf,
		Kubeconfig: r.Kubeconfig,
		LogFile:    r.LogFile,
		Pods: podcheck.Config{
			ExcludeNamespaces:  DefaultExcludeNamespaces,
			InstallerNamespace: r.InstallerNamespace,
			InstallerPodPrefix: r.InstallerPodPrefix,
		},
	}
	if r.ExcludeNamespaces != nil {
		c.Pods.ExcludeNamespaces = *r.ExcludeNamespaces
	}
	var errs []error
	for _, ns := range c.Pods.ExcludeNamespaces {
		if ns == "" || strings.ContainsAny(ns, " \t/") {
			errs = append(errs, fmt.Errorf("excludeNamespaces: %q is not a namespace name", ns))
		}
	}
	var err error
	if c.FailurePolicy, err = parsePolicy(r.FailurePolicy); err != nil {
		errs = append(errs, err)
	}
	if c.PodLookupTimeout, err = parseTimeout(r.PodLookupTimeout); err != nil {
		errs = append(errs, err)
	}
	if c.Backend, err = nat.ParseBackend(r.IptablesBackend); err != nil {
		errs = append(errs, fmt.Errorf("iptablesBackend: %w", err))
	}
	if c.LogLevel, err = parseLevel(r.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.AgentSocket, err = parseAgentSocket(r.AgentSocket); err != nil {
		errs = append(errs, err)
	}
	if c.SandboxDir, err = parseDir("sandboxDir", r.SandboxDir, DefaultSandboxDir); err != nil {
		errs = append(errs, err)
	}
	if c.Node, err = r.Redirect.node(); err != nil {
		errs = append(errs, err)
	}
	c.Pods.DefaultProxy = c.Node.Proxy
	if (r.InstallerNamespace == "") != (r.InstallerPodPrefix == "") {
		errs = append(errs, errors.New("installerNamespace and installerPodPrefix go together: set both or neither"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid mesh-cni config: %w", errors.Join(errs...))
	}
	return c, nil
}

func parsePolicy(s string) (FailurePolicy, error) {
	switch p := FailurePolicy(s); p {
	case "":
		return Block, nil
	case Block, Alert:
		return p, nil
	}
	return "", fmt.Errorf("failurePolicy: unknown value %q (want Block or Alert)", s)
}

func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return DefaultPodLookupTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("podLookupTimeout: %q is not a positive duration such as \"30s\"", s)
	}
	return d, nil
}

func parseAgentSocket(s *string) (string, error) {
	switch {
	case s == nil:
		return DefaultAgentSocket, nil
	case *s == "":
		return "", nil
	case !strings.HasPrefix(*s, "/"):
		return "", fmt.Errorf("agentSocket: %q is not an absolute path (\"\" turns the agent off)", *s)
	}
	return *s, nil
}

// parseDir reads an absolute path key: absent is def, "" turns it off.
func parseDir(key string, s *string, def string) (string, error) {
	switch {
	case s == nil:
		return def, nil
	case *s == "":
		return "", nil
	case !strings.HasPrefix(*s, "/"):
		return "", fmt.Errorf("%s: %q is not an absolute path (\"\" turns it off)", key, *s)
	}
	return *s, nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("logLevel: unknown value %q (want debug, info, warn or error)", s)
}

func (rc *redirectConfig) node() (redirect.Node, error) {
	n := redirect.DefaultNode()
	if rc == nil {
		return n, nil
	}
	set := func(dst *uint16, v *uint16, key string) error {
		if v == nil {
			return nil
		}
		if *v == 0 {
			return fmt.Errorf("redirect.%s: port 0 is not a port", key)
		}
		*dst = *v
		return nil
	}
	if err := errors.Join(
		set(&n.OutboundPort, rc.OutboundPort, "outboundPort"),
		set(&n.InboundPort, rc.InboundPort, "inboundPort"),
		set(&n.InboundTunnelPort, rc.InboundTunnelPort, "inboundTunnelPort"),
	); err != nil {
		return n, err
	}
	if rc.ProxyUID != nil {
		n.Proxy.UID = *rc.ProxyUID
	}
	if rc.ProxyGID != nil {
		n.Proxy.GID = *rc.ProxyGID
	}
	for _, f := range []struct {
		dst *string
		v   *string
	}{
		{&n.Lists.IncludeInboundPorts, rc.IncludeInboundPorts},
		{&n.Lists.ExcludeInboundPorts, rc.ExcludeInboundPorts},
		{&n.Lists.IncludeOutboundIPRanges, rc.IncludeOutboundIPRanges},
		{&n.Lists.ExcludeOutboundIPRanges, rc.ExcludeOutboundIPRanges},
		{&n.Lists.IncludeOutboundPorts, rc.IncludeOutboundPorts},
		{&n.Lists.ExcludeOutboundPorts, rc.ExcludeOutboundPorts},
		{&n.Lists.ExcludeInterfaces, rc.ExcludeInterfaces},
	} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	return n, n.Validate()
}
