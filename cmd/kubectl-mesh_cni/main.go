// Command kubectl-mesh_cni is the kubectl plug-in `kubectl mesh-cni`: it
// answers "is this pod redirected, and if not, why?" from where the
// operator runs kubectl (see docs/operators.md).
package main

import (
	"os"

	"github.com/meshcni/mesh-cni/pkg/nodeinspect"
)

func main() {
	os.Exit(nodeinspect.Command(os.Args[1:], os.Stdin, os.Stdout, os.Stderr,
		func(kubeconfig, context string) nodeinspect.Kubectl {
			return nodeinspect.Exec{Path: os.Getenv("KUBECTL"), Kubeconfig: kubeconfig, Context: context}
		}))
}
