// Command install-cni is the mesh-cni DaemonSet container: it installs the
// plug-in on the node, keeps it chained into the primary CNI configuration
// and removes it on SIGTERM (pkg/installer, docs/installer.md), and runs the
// node agent the plug-in asks for pods and reports its decisions to
// (pkg/agent, docs/agent.md), and mints the plug-in's own short-lived token
// (pkg/plugintoken).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/meshcni/mesh-cni/pkg/agent"
	"github.com/meshcni/mesh-cni/pkg/inplace"
	"github.com/meshcni/mesh-cni/pkg/installer"
	"github.com/meshcni/mesh-cni/pkg/plugintoken"
	"github.com/meshcni/mesh-cni/pkg/readiness"
)

func main() {
	acfg, rest, err := agent.ParseFlags(os.Args[1:], os.Getenv)
	var cfg installer.Config
	if err == nil {
		cfg, err = installer.ParseFlags(rest, os.Getenv)
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Print(installer.Usage(), agent.Usage())
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "install-cni:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, acfg); err != nil {
		fmt.Fprintln(os.Stderr, "install-cni:", err)
		os.Exit(1)
	}
}

// run shares one logger and one metrics registry between the installer,
// the plug-in token refresher and the agent; the agent's decision lines go
// to stdout.
func run(ctx context.Context, cfg installer.Config, acfg agent.Config) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Logger = installer.NewLogger(os.Stderr, cfg.LogLevel)
	cfg.Registry = reg
	acfg.Socket, acfg.Logger, acfg.Registry, acfg.Out = cfg.AgentSocket, cfg.Logger, reg, os.Stdout
	if acfg.NodeName == "" {
		acfg.NodeName = cfg.NodeName
	}
	if acfg.Socket == "" && acfg.PluginServiceAccount == "" {
		return installer.Run(ctx, cfg)
	}
	rc, err := agent.RESTConfig(acfg.Kubeconfig)
	if err != nil && acfg.Kubeconfig == "" {
		// Outside a cluster without --kubeconfig there is nobody to watch
		// and nobody to mint a token: the plug-in is told so, reads pods
		// itself and uses the copied service account token, as without an
		// agent.
		cfg.Logger.Warn("node agent and plug-in token off: no in-cluster identity and no --kubeconfig; "+
			"the plug-in reads pods from the API with a copy of this pod's service account token", "error", err.Error())
		cfg.AgentSocket = ""
		return installer.Run(ctx, cfg)
	}
	if err != nil {
		return err
	}
	// Background parts outlive the installer's cleanup: plug-ins still
	// running during it keep their answers.
	bgCtx, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var bg []<-chan error
	if acfg.PluginServiceAccount != "" {
		tokens, err := newPluginToken(cfg, acfg, rc, reg)
		if err != nil {
			return err
		}
		cfg.PluginToken = tokens
		done := make(chan error, 1)
		go func() { tokens.Run(bgCtx); done <- nil }()
		bg = append(bg, done)
	}
	// The readiness taint: told by the installer (OnState) and the agent
	// (OnReady); it reads the agent's readiness once a is set (before its
	// Run starts).
	var a *agent.Agent
	var lifter *readiness.Lifter
	if acfg.ReadinessTaint {
		agentReady := func() error {
			if a == nil {
				return nil // no agent: the plug-in reads pods itself
			}
			return a.Ready()
		}
		if lifter, err = newLifter(cfg, acfg, rc, reg, agentReady); err != nil {
			return err
		}
		cfg.OnState, acfg.OnReady = lifter.OnState, lifter.Wake
	}
	if acfg.Socket != "" {
		if a, err = agent.New(acfg, rc); err != nil {
			return err
		}
		cfg.ReadyCheck = a.Ready
		if err := enableRepair(&cfg, a, rc); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(bgCtx) }()
		bg = append(bg, done)
	}
	if lifter != nil {
		done := make(chan error, 1)
		go func() { lifter.Run(bgCtx); done <- nil }()
		bg = append(bg, done)
	}
	err = installer.Run(ctx, cfg)
	stopBG()
	for _, done := range bg {
		err = errors.Join(err, <-done)
	}
	return err
}

// newPluginToken builds the refresher of the plug-in's own token: its
// service account in the DaemonSet's namespace, each token bound to this
// node (NODE_NAME) when it is known.
func newPluginToken(cfg installer.Config, acfg agent.Config, rc *rest.Config, reg *prometheus.Registry) (*plugintoken.Refresher, error) {
	core, err := typedcorev1.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("plug-in token API client: %w", err)
	}
	ns := cfg.InstallerNamespace
	pcfg := plugintoken.Config{Namespace: ns, ServiceAccount: acfg.PluginServiceAccount, Expiry: acfg.PluginTokenExpiry,
		Logger: cfg.Logger, Registry: reg}
	pcfg.BoundNode = acfg.NodeName
	return plugintoken.New(pcfg, core.ServiceAccounts(ns))
}

// newLifter builds the readiness part: its node's Node object (get, and a
// patch that can only remove the taint), Events, and STATUS of the plug-in
// the installer put in the CNI bin dir, run with the host's iptables tools
// on its PATH (--status-path).
func newLifter(cfg installer.Config, acfg agent.Config, rc *rest.Config, reg *prometheus.Registry, agentReady func() error) (*readiness.Lifter, error) {
	core, err := typedcorev1.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("readiness API client: %w", err)
	}
	return readiness.New(readiness.Config{
		NodeName: acfg.NodeName,
		Nodes:    core.Nodes(),
		Events:   core,
		Prober: &readiness.ExecProber{
			Binary: filepath.Join(cfg.BinDir, installer.PluginType), CNIPath: cfg.BinDir,
			HostKubeconfigDir: cfg.HostKubeconfigDir, KubeconfigDir: cfg.KubeconfigDir, Path: acfg.StatusPath,
		},
		Agent:    agentReady,
		Logger:   cfg.Logger,
		Registry: reg,
	})
}

// enableRepair wires the repair controller (docs/repair.md): the
// installer's state goes to it through OnState, which only stores it and
// notifies the controller when it changed (OnState must not block).
func enableRepair(cfg *installer.Config, a *agent.Agent, rc *rest.Config) error {
	core, err := typedcorev1.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("repair API client: %w", err)
	}
	var state atomic.Pointer[installer.State]
	state.Store(&installer.State{})
	// inplace.New is only called on in repair mode (REPAIR_MODE=repair,
	// deploy/components/repair-inplace gives it hostPID and the capabilities).
	ctl, err := a.EnableRepair(core, inplace.New(), func() (string, bool) {
		s := state.Load()
		return s.ConflistPath, s.Installed
	})
	if err != nil {
		return err
	}
	prev := cfg.OnState
	cfg.OnState = func(s installer.State) {
		if prev != nil {
			prev(s)
		}
		if old := state.Swap(&s); old.Installed != s.Installed || old.ConflistPath != s.ConflistPath {
			ctl.Notify()
		}
	}
	return nil
}
