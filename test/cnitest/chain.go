package cnitest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
)

// DebianPluginDir is where Debian's containernetworking-plugins live.
const DebianPluginDir = "/usr/lib/cni"

// Chain is a conflist run through libcni, the way containerd runs it:
// Debian's bridge + host-local, then mesh-cni. It runs inside Node, a
// namespace standing in for the node, so the bridge, its address and the
// IPAM state never touch the real host.
type Chain struct {
	Node     *Netns
	Dir      string
	ConfList *libcni.NetworkConfigList
	cni      *libcni.CNIConfig
}

// ChainOptions shape the conflist.
type ChainOptions struct {
	CNIVersion string         // default 1.0.0 (Debian's plug-ins stop there)
	Subnet     string         // the pods' subnet, default 198.18.0.0/24 (RFC 2544 test range)
	MeshConf   map[string]any // mesh-cni's keys; type is added
	MeshBinDir string         // where the mesh-cni binary is
	// Primary is the primary plug-in: "bridge" (default) or "ptp". ptp's
	// DEL releases the IP before it looks at the netns, so a test can see
	// that the primary's DEL ran even when the netns is broken.
	Primary string
}

// NewChain writes the conflist into dir and creates the node namespace.
func NewChain(dir string, o ChainOptions) (*Chain, error) {
	if o.CNIVersion == "" {
		o.CNIVersion = "1.0.0"
	}
	if o.Subnet == "" {
		o.Subnet = "198.18.0.0/24"
	}
	// No node agent unless a test brings one: the default socket may be a
	// running local cluster's agent, which does not know the test's pods.
	mesh := map[string]any{"type": "mesh-cni", "agentSocket": ""}
	// Sandbox records in the test's dir, never the host's /var/run.
	mesh["sandboxDir"] = filepath.Join(dir, "sandboxes")
	for k, v := range o.MeshConf {
		mesh[k] = v
	}
	ipam := map[string]any{
		"type":    "host-local",
		"ranges":  [][]map[string]string{{{"subnet": o.Subnet}}},
		"dataDir": filepath.Join(dir, "ipam"),
		"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
	}
	primary := map[string]any{"type": "bridge", "bridge": "mcni0", "isGateway": true, "ipMasq": false, "ipam": ipam}
	if o.Primary == "ptp" {
		primary = map[string]any{"type": "ptp", "ipMasq": false, "ipam": ipam}
	}
	conf := map[string]any{
		"cniVersion": o.CNIVersion,
		"name":       "mesh-test",
		"plugins":    []any{primary, mesh},
	}
	raw, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "10-mesh-test.conflist")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return nil, err
	}
	return NewChainFromBytes(dir, raw, o.MeshBinDir, DebianPluginDir)
}

// BridgeConfList is a primary CNI config as a node would have it before
// mesh-cni is installed: Debian's bridge + host-local, nothing else.
func BridgeConfList(dir, cniVersion string) []byte {
	return []byte(fmt.Sprintf(`{
  "cniVersion": %q,
  "name": "bridge-net",
  "plugins": [
    {
      "type": "bridge", "bridge": "mcni0", "isGateway": true, "ipMasq": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.0.0/24"}]],
               "dataDir": %q, "routes": [{"dst": "0.0.0.0/0"}]}
    }
  ]
}
`, cniVersion, filepath.Join(dir, "ipam")))
}

// NewChainFromBytes runs an existing conflist (say, the one install-cni
// wrote) with plug-ins searched in binDirs, in a new node namespace.
func NewChainFromBytes(dir string, raw []byte, binDirs ...string) (*Chain, error) {
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		return nil, err
	}
	node, err := NewNetns("mcni-node")
	if err != nil {
		return nil, err
	}
	return &Chain{
		Node: node, Dir: dir, ConfList: list,
		cni: libcni.NewCNIConfigWithCacheDir(binDirs, filepath.Join(dir, "cache"), nil),
	}, nil
}

// Close deletes the node namespace (and with it the bridge).
func (c *Chain) Close() { c.Node.Delete() }

// Pod is what a runtime knows about a sandbox.
type Pod struct {
	Netns       *Netns
	Namespace   string
	Name        string
	ContainerID string
	// UID, when set, is passed as K8S_POD_UID, as containerd and CRI-O do.
	UID string
}

func (c *Chain) rt(p Pod) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: p.ContainerID,
		NetNS:       p.Netns.Path(),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
		},
	}
	if p.UID != "" {
		rt.Args = append(rt.Args, [2]string{"K8S_POD_UID", p.UID})
	}
	return rt
}

// inNode runs fn on a thread inside the node namespace; the plug-ins
// libcni starts inherit it.
func (c *Chain) inNode(fn func() error) error {
	return ns.WithNetNSPath(c.Node.Path(), func(ns.NetNS) error { return fn() })
}

// Add runs ADD for the whole chain.
func (c *Chain) Add(p Pod) (res types.Result, err error) {
	err = c.inNode(func() error {
		res, err = c.cni.AddNetworkList(context.Background(), c.ConfList, c.rt(p))
		return err
	})
	return res, err
}

// Check runs CHECK for the whole chain.
func (c *Chain) Check(p Pod) error {
	return c.inNode(func() error { return c.cni.CheckNetworkList(context.Background(), c.ConfList, c.rt(p)) })
}

// Del runs DEL for the whole chain.
func (c *Chain) Del(p Pod) error {
	return c.inNode(func() error { return c.cni.DelNetworkList(context.Background(), c.ConfList, c.rt(p)) })
}

// String names the chain for logs.
func (c *Chain) String() string {
	return fmt.Sprintf("chain %s in netns %s", c.ConfList.Name, c.Node.Name)
}
