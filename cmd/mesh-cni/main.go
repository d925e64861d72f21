// Command mesh-cni is the chained CNI plug-in that redirects a meshed pod's
// traffic to its sidecar, so the pod needs no NET_ADMIN istio-init.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/meshcni/mesh-cni/pkg/plugin"
)

func main() {
	p := &plugin.Plugin{Deps: plugin.Real()}
	skel.PluginMainFuncs(p.Funcs(), version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "mesh-cni: chained service-mesh traffic redirect")
}
