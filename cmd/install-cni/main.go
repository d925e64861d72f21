// Command install-cni is the mesh-cni DaemonSet container: it installs the
// plug-in on the node, keeps it chained into the primary CNI configuration
// and removes it on SIGTERM. All logic lives in pkg/installer; see
// docs/installer.md for flags and behaviour.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshcni/mesh-cni/pkg/installer"
)

func main() {
	cfg, err := installer.ParseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Print(installer.Usage())
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "install-cni:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := installer.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "install-cni:", err)
		os.Exit(1)
	}
}
