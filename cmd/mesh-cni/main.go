// Command mesh-cni is the chained CNI plug-in that redirects a meshed pod's
// traffic to its sidecar, so the pod needs no NET_ADMIN istio-init. Run by
// an operator (no CNI_COMMAND) as `mesh-cni explain` or `mesh-cni inspect`,
// it answers whether a pod is redirected and why.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/meshcni/mesh-cni/pkg/explain"
	"github.com/meshcni/mesh-cni/pkg/inspect"
	"github.com/meshcni/mesh-cni/pkg/plugin"
)

func main() {
	// A runtime always sets CNI_COMMAND; only then is this the plug-in,
	// whose stdout carries the CNI result alone.
	if os.Getenv("CNI_COMMAND") == "" && len(os.Args) > 1 {
		switch os.Args[1] {
		case "explain":
			os.Exit(explain.Command(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
		case "inspect":
			os.Exit(inspect.Command(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	p := &plugin.Plugin{Deps: plugin.Real()}
	skel.PluginMainFuncs(p.Funcs(), version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "mesh-cni: chained service-mesh traffic redirect")
}
