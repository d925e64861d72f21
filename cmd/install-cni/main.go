// Command install-cni is the mesh-cni DaemonSet container: it installs the
// plug-in on the node, keeps it chained into the primary CNI configuration
// and removes it on SIGTERM (pkg/installer, docs/installer.md), and runs the
// node agent the plug-in asks for pods and reports its decisions to
// (pkg/agent, docs/agent.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshcni/mesh-cni/pkg/agent"
	"github.com/meshcni/mesh-cni/pkg/installer"
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

// run shares one logger and one metrics registry between the installer and
// the agent; the agent's decision lines go to stdout.
func run(ctx context.Context, cfg installer.Config, acfg agent.Config) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Logger = installer.NewLogger(os.Stderr, cfg.LogLevel)
	cfg.Registry = reg
	acfg.Socket, acfg.Logger, acfg.Registry, acfg.Out = cfg.AgentSocket, cfg.Logger, reg, os.Stdout
	if acfg.NodeName == "" {
		acfg.NodeName = cfg.NodeName
	}
	if acfg.Socket == "" {
		return installer.Run(ctx, cfg)
	}
	rc, err := agent.RESTConfig(acfg.Kubeconfig)
	if err != nil && acfg.Kubeconfig == "" {
		// Outside a cluster without --kubeconfig there is nobody to watch:
		// the plug-in is told so and reads pods itself, as without an agent.
		cfg.Logger.Warn("node agent off: no in-cluster identity and no --kubeconfig; the plug-in reads pods from the API", "error", err.Error())
		cfg.AgentSocket = ""
		return installer.Run(ctx, cfg)
	}
	if err != nil {
		return err
	}
	a, err := agent.New(acfg, rc)
	if err != nil {
		return err
	}
	cfg.ReadyCheck = a.Ready
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	err = installer.Run(ctx, cfg)
	// The agent outlives the installer's cleanup: plug-ins still running
	// during it keep their answers.
	stopAgent()
	return errors.Join(err, <-agentDone)
}
